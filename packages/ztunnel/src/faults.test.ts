import os from "node:os";
import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createFaults } from "./faults.js";
import { createLocalAddresses } from "./local-addresses.js";
import { createLogger } from "./logging.js";

function setup(): { faults: ReturnType<typeof createFaults>; registry: Registry; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const registry = new Registry();
  return { faults: createFaults(createLogger({ logFormat: "json", logLevel: "info" }, sink), registry), registry, lines };
}

afterEach(() => vi.restoreAllMocks());

describe("the last-resort policy", () => {
  it("an uncaught exception or unhandled rejection is logged and counted, and the process goes on", async () => {
    const { faults, registry, lines } = setup();
    faults.install();
    try {
      process.emit("uncaughtException", new Error("a bug in a timer"), "uncaughtException");
      process.emit("unhandledRejection", new Error("a forgotten promise"), Promise.resolve());
    } finally {
      faults.uninstall();
    }
    const text = await registry.metrics();
    expect(text).toContain('ztunnel_internal_errors_total{where="uncaught exception"} 1');
    expect(text).toContain('ztunnel_internal_errors_total{where="unhandled rejection"} 1');
    expect(lines.map((l) => l["code"])).toEqual(["UNCAUGHT_EXCEPTION", "UNCAUGHT_EXCEPTION"]);
  });

  it("a fault repeated in one place is logged once a second, and every one is counted", async () => {
    const { faults, registry, lines } = setup();
    for (let i = 0; i < 500; i++) faults.report("keepalive", new Error("again"));
    expect(lines).toHaveLength(1);
    expect(await registry.metrics()).toContain('ztunnel_internal_errors_total{where="keepalive"} 500');
  });

  it("the local-address refresh that throws EMFILE keeps the last set instead of killing the agent", async () => {
    vi.useFakeTimers();
    try {
      const reported: string[] = [];
      const addrs = createLocalAddresses((where) => reported.push(where), 1000);
      const known = Object.values(os.networkInterfaces()).flat().find((a) => a && !a.address.startsWith("127."))?.address;
      vi.spyOn(os, "networkInterfaces").mockImplementation(() => {
        throw Object.assign(new Error("EMFILE: too many open files, uv_interface_addresses"), { code: "EMFILE" });
      });
      vi.advanceTimersByTime(1500);
      expect(reported).toEqual(["local address refresh"]);
      if (known) expect(addrs.has(known)).toBe(true);
      addrs.close();
    } finally {
      vi.useRealTimers();
    }
  });
});
