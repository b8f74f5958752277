import { createHash } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { flood } from "../../../test/support/h2-attacks.js";
import { createInboundServer, type InboundServer } from "./inbound.js";
import { createProxyListener } from "./listener.js";
import { createReceiveBudget } from "./receive-budget.js";
import { testContext } from "./test-support/context.js";

// A real inbound server on 127.63.1.10:15008 whose destination accepts and never reads.
// One raw HTTP/2 client opens 16 streams and pushes as fast as the windows allow: without
// a connection budget the agent would hold 16 × the 4 MiB stream window; with it, about
// one connection window (here 4 MiB), and everything flows again once the sink reads.
const IP = "127.63.1.10";
const MiB = 1 << 20;
const YAML = `
workloads:
- {name: sink, namespace: default, serviceAccount: sink, workloadIps: ["${IP}"], protocol: HBONE, node: node-a}
`;
const budget = createReceiveBudget({ sessionBytes: 4 * MiB, totalBytes: 64 * MiB, tickMs: 20 });
let ctx: Awaited<ReturnType<typeof testContext>>;
let inbound: InboundServer;
let listener: net.Server;
let sink: net.Server;
const held: net.Socket[] = [];

beforeAll(async () => {
  ctx = await testContext(YAML, { receiveBudget: budget, connectionWindowSize: 4 * MiB });
  inbound = createInboundServer(ctx);
  listener = createProxyListener(ctx, "hbone", (s) => inbound.accept(s));
  await new Promise<void>((r) => listener.listen(15008, IP, () => r()));
  sink = net.createServer({ pauseOnConnect: true }, (s) => {
    s.on("error", () => {});
    held.push(s);
  });
  await new Promise<void>((r) => sink.listen(8080, IP, () => r()));
});
afterAll(() => {
  inbound.close();
  listener.close();
  sink.close();
  budget.close();
  ctx.dispose();
});

const until = async (what: string, ok: () => boolean, ms = 20_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe("the connection window tracks what is consumed", () => {
  test("streams towards a destination that does not read hold about one connection window, not streams × stream window", async () => {
    const f = await flood({ target: IP, authority: `${IP}:8080`, cert: await ctx.certs.fetch("spiffe://cluster.local/ns/default/sa/evil"), streams: 16 });
    await until("16 streams open", () => f.opened() === 16 && held.length === 16);
    // Wait until the kernel buffers are full and the agent holds what the peer can still send.
    let peak = 0;
    let last = -1;
    let quiet = 0;
    while (quiet < 10) {
      await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, budget.stats().heldBytes);
      quiet = f.pusher.sent === last ? quiet + 1 : 0;
      last = f.pusher.sent;
    }
    expect(budget.stats().throttled).toBe(1);
    // One connection window (4 MiB), plus what was already granted before the stall showed, not 16 × 4 MiB.
    expect(peak).toBeGreaterThan(2 * MiB);
    expect(peak).toBeLessThan(12 * MiB);
    // The sink starts reading: every byte arrives, the window is given back, nothing is stuck.
    const digests = held.map((s) => {
      const h = createHash("sha256");
      let n = 0;
      s.on("data", (c: Buffer) => {
        n += c.length;
        h.update(c);
      });
      s.resume();
      return () => n;
    });
    f.pusher.stopped = true;
    const sent = f.pusher.sent;
    await until("everything delivered", () => digests.reduce((a, n) => a + n(), 0) === sent);
    await until("window given back", () => budget.stats().heldBytes === 0 && budget.stats().throttled === 0);
    f.close();
  });
});
