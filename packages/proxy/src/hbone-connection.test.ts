import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ProxyError } from "./errors.js";
import { watchHboneConnection, type HboneConnection } from "./hbone-connection.js";
import { createReceiveBudget } from "./receive-budget.js";

// The rule for an HBONE connection's end, on a real HTTP/2 connection over loopback TCP (TLS
// changes nothing here: the watcher sees the socket's events either way). The server on
// 127.0.0.1 answers every CONNECT 200 and, for ":authority" done:1, sends 32 KiB and ends.
let server: http2.Http2Server;
let port = 0;
const budget = createReceiveBudget({ streamWindow: 1 << 20, sessionBytes: 4 << 20, totalBytes: 16 << 20 });

beforeAll(async () => {
  server = http2.createServer();
  server.on("stream", (s, headers) => {
    s.on("error", () => {});
    s.respond({ ":status": 200 });
    if (headers[":authority"] === "done:1") s.end(Buffer.alloc(32 * 1024, 0x61));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as net.AddressInfo).port;
});
afterAll(() => {
  server.close();
  budget.close();
});

interface Opened {
  readonly c: HboneConnection;
  readonly broken: ProxyError[];
}

async function open(): Promise<Opened> {
  const socket = net.connect({ host: "127.0.0.1", port });
  const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => socket });
  session.on("error", () => {});
  const broken: ProxyError[] = [];
  const c = watchHboneConnection(session, socket as unknown as tls.TLSSocket, "the test peer", { of: budget, window: 1 << 20 }, (err) => broken.push(err));
  await new Promise((r) => session.once("connect", r));
  return { c, broken };
}

/** A CONNECT stream, answered; resolves with it and with how it will end (the error's code, or "clean"). */
async function stream(c: HboneConnection, authority: string): Promise<{ s: http2.ClientHttp2Stream; ended: Promise<string> }> {
  const s = (c.session as http2.ClientHttp2Session).request({ ":method": "CONNECT", ":authority": authority });
  c.track(s);
  const ended = new Promise<string>((resolve) => {
    s.once("error", (err: Error) => resolve(err instanceof ProxyError ? err.code : `foreign ${String((err as NodeJS.ErrnoException).code)}`));
    s.once("close", () => resolve("clean"));
  });
  await new Promise((r) => s.once("response", r));
  return { s, ended };
}

describe("an HBONE connection's end", () => {
  test("a session destroyed with our error (the receive budget's): its streams end with it, and it is reported once", async () => {
    const { c, broken } = await open();
    const a = await stream(c, "open:1");
    const b = await stream(c, "open:2");
    c.session.destroy(new ProxyError("HBONE_PROTOCOL_ERROR", "the HBONE peer did not acknowledge a SETTINGS change"));
    expect(await a.ended).toBe("HBONE_PROTOCOL_ERROR");
    expect(await b.ended).toBe("HBONE_PROTOCOL_ERROR");
    await new Promise((r) => c.session.once("close", r));
    expect(broken.map((e) => e.code)).toEqual(["HBONE_PROTOCOL_ERROR"]);
    expect(c.reason?.message).toMatch(/SETTINGS/);
  });

  test("a killed connection's completed stream that still holds data ends with the kill's reason too", async () => {
    const { c, broken } = await open();
    const done = await stream(c, "done:1");
    done.s.pause();
    done.s.end();
    // Both sides ended; the 32 KiB stay unread in the stream.
    await new Promise((r) => setTimeout(r, 50));
    expect(done.s.destroyed).toBe(false);
    expect(done.s.closed).toBe(true);
    c.kill(new ProxyError("HBONE_KEEPALIVE_TIMEOUT", "the HBONE peer did not answer PINGs"));
    expect(await done.ended).toBe("HBONE_KEEPALIVE_TIMEOUT");
    expect(broken).toEqual([]);
  });
});
