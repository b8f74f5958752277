import { createHash } from "node:crypto";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { flood, type Flood } from "../../../test/support/h2-attacks.js";
import { createInboundServer, type InboundServer } from "./inbound.js";
import { createProxyListener } from "./listener.js";
import { plainDialer } from "./dial.js";
import { createReceiveBudget } from "./receive-budget.js";
import { testContext } from "./test-support/context.js";

// A real inbound server on 127.63.1.10:15008 with a budget of 4 MiB per connection and
// 12 MiB in all, 1 MiB stream windows. Destinations: a sink that accepts and reads only
// when told to, an echo, and a port whose dial never completes.
const IP = "127.63.1.10";
const MiB = 1 << 20;
const YAML = `
workloads:
- {name: sink, namespace: default, serviceAccount: sink, workloadIps: ["${IP}"], protocol: HBONE, node: node-a}
`;
const budget = createReceiveBudget({ streamWindow: MiB, sessionBytes: 4 * MiB, totalBytes: 12 * MiB, tickMs: 20 });
let ctx: Awaited<ReturnType<typeof testContext>>;
let inbound: InboundServer;
let listener: net.Server;
const servers: net.Server[] = [];
let sinkSockets: net.Socket[] = [];

beforeAll(async () => {
  // Port 8082: a destination whose dial never completes (until the connect timeout).
  const dialer = (ip: string, port: number): net.Socket => (port === 8082 ? new net.Socket() : plainDialer(ip, port));
  ctx = await testContext(YAML, { receiveBudget: budget, streamWindowSize: MiB, connectionWindowSize: 4 * MiB, dialer });
  // A short keepalive, as the agent has one: a client gone without the server seeing its FIN is cut within seconds, not 30 s.
  inbound = createInboundServer(ctx, { pingIntervalMs: 500, pingTimeoutMs: 2000 });
  listener = createProxyListener(ctx, "hbone", (s) => inbound.accept(s));
  await new Promise<void>((r) => listener.listen(15008, IP, () => r()));
  const sink = net.createServer({ pauseOnConnect: true }, (s) => {
    s.on("error", () => {});
    sinkSockets.push(s);
  });
  const echo = net.createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  for (const [server, port] of [[sink, 8080], [echo, 8081]] as const) await new Promise<void>((r) => server.listen(port, IP, () => r()));
  servers.push(sink, echo);
});
afterAll(() => {
  inbound.close();
  listener.close();
  for (const s of servers) s.close();
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
/** Wait until `f` has stopped sending (the agent offers it no more window), and return the peak held. */
async function settle(f: Flood): Promise<number> {
  let peak = 0;
  let last = -1;
  let quiet = 0;
  while (quiet < 10) {
    await new Promise((r) => setTimeout(r, 100));
    peak = Math.max(peak, budget.stats().heldBytes);
    quiet = f.pusher.sent === last ? quiet + 1 : 0;
    last = f.pusher.sent;
  }
  return peak;
}
/** Floods of the running test, closed after it even when it fails (what they hold would count in the next test). */
const open: Flood[] = [];
const track = (f: Flood): Flood => (open.push(f), f);
afterEach(() => {
  for (const f of open.splice(0)) f.close();
  for (const s of sinkSockets) s.destroy();
});
const evil = (): ReturnType<typeof ctx.certs.fetch> => ctx.certs.fetch("spiffe://cluster.local/ns/default/sa/evil");

describe("what a connection can make the agent hold", () => {
  test("streams towards a destination that does not read: less than streams × stream window, the stream window lowered; it all flows again after", async () => {
    sinkSockets = [];
    const f = track(await flood({ target: IP, authority: `${IP}:8080`, cert: await evil(), streams: 16 }));
    await until("16 streams open", () => f.opened() === 16 && sinkSockets.length === 16);
    const peak = await settle(f);
    expect(budget.stats().throttled).toBe(1);
    expect(f.pusher.initialWindow).toBeLessThan(MiB);
    // 16 × 1 MiB windows would be 16 MiB (plus the kernel's buffers); the budget is 4 MiB. Until
    // the first re-count, and while its SETTINGS is in flight, each stream can fill the window it
    // was offered: on a busy machine the peak is up to about twice the budget.
    expect(peak).toBeGreaterThan(MiB);
    expect(peak).toBeLessThan(12 * MiB);
    // The sink reads: what was held arrives, the normal window comes back, and new bytes keep flowing.
    const got = sinkSockets.map((s) => {
      const h = createHash("sha256");
      let n = 0;
      s.on("data", (c: Buffer) => ((n += c.length), h.update(c)));
      s.resume();
      return () => n;
    });
    const before = f.pusher.sent;
    await until("more than was held arrives", () => got.reduce((a, n) => a + n(), 0) > before + 16 * MiB, 20_000);
    await until("window back to normal", () => budget.stats().throttled === 0);
    f.pusher.stopped = true;
    const sent = f.pusher.sent;
    await until("everything delivered", () => got.reduce((a, n) => a + n(), 0) === sent);
    f.close();
  });

  test("data sent before the upstream is connected counts too", async () => {
    const f = track(await flood({ target: IP, authority: `${IP}:8082`, cert: await evil(), streams: 16, pushBeforeAnswer: true }));
    const peak = await settle(f);
    // Counted while their dial is pending: the budget lowered the connection's stream window.
    // How much arrives before that depends on the machine: a burst of 16 × 1 MiB over loopback
    // can land within one re-count (README), so the peak is bounded only by the windows offered.
    expect(peak).toBeGreaterThan(MiB);
    expect(peak).toBeLessThanOrEqual(16 * MiB);
    expect(budget.stats().throttled).toBe(1);
    expect(f.pusher.initialWindow).toBeLessThan(MiB);
    f.close();
  });

  test("one peer over the total does not freeze another's flowing connection", async () => {
    sinkSockets = [];
    const floods = await Promise.all([0, 1, 2, 3].map(async () => track(await flood({ target: IP, authority: `${IP}:8080`, cert: await evil(), streams: 16 }))));
    await until("held over the total", () => budget.stats().heldBytes > 12 * MiB, 20_000);
    // Meanwhile an echo on a fresh connection keeps moving.
    const echo = track(await flood({ target: IP, authority: `${IP}:8081`, cert: await ctx.certs.fetch("spiffe://cluster.local/ns/default/sa/sleep"), streams: 1 }));
    await until("echo flows", () => echo.received() > 4 * MiB, 20_000);
    for (const f of [...floods, echo]) f.close();
    for (const s of sinkSockets) s.destroy();
    await until("nothing held", () => budget.stats().heldBytes === 0);
  });
});
