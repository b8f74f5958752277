import net from "node:net";
import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { listen } from "./listen.js";
import { createListenerErrors } from "./listener-errors.js";
import { createLogger } from "./logging.js";

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** What Node's net emits on a listening server when accept() fails (lib/net.js onconnection). */
function acceptError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`accept ${code}`), { code, errno: -24, syscall: "accept" });
}

describe("listener errors after listen", () => {
  // A real EMFILE from accept is mostly absorbed by libuv's reserve-descriptor trick, so it
  // cannot be produced on demand: the error is emitted the way Node's net emits it.
  it("are counted and logged (throttled), and the listener keeps accepting", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(...c.toString().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)), cb()) });
    const registry = new Registry();
    const keepErrors = createListenerErrors(registry, createLogger({ logFormat: "json", logLevel: "info" }, sink));
    const server = net.createServer((s) => s.end("hi"));
    servers.push(server);
    const addr = await listen(server, { ip: "127.50.9.1", port: 0 });
    keepErrors(server, "readiness");

    expect(() => {
      server.emit("error", acceptError("EMFILE"));
      server.emit("error", acceptError("EMFILE"));
    }).not.toThrow();
    expect(server.listening).toBe(true);
    const got = await new Promise<string>((resolve, reject) => {
      let text = "";
      net.connect(addr.port, addr.address).on("data", (c: Buffer) => (text += c.toString())).on("end", () => resolve(text)).on("error", reject);
    });
    expect(got).toBe("hi");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "error", listener: "readiness", code: "EMFILE" });
    expect(String(lines[0]?.["msg"])).toContain("out of file descriptors");
    expect(await registry.metrics()).toContain('ztunnel_listener_errors_total{listener="readiness",code="EMFILE"} 2');
  });
});
