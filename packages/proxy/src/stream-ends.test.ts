import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createInboundServer, type InboundServer } from "./inbound.js";
import { createProxyListener } from "./listener.js";
import { createHbonePool, type HbonePool, type PoolKey } from "./pool.js";
import { createReceiveBudget } from "./receive-budget.js";
import { splice, type SpliceOutcome } from "./splice.js";
import { testContext } from "./test-support/context.js";

// How streams end in the corners: the pool and a real inbound server on 127.69.1.10:15008.
const DST = "127.69.1.10";
const SRC = "127.69.1.5";
const MiB = 1 << 20;
const YAML = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${SRC}"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${DST}"], protocol: HBONE, node: node-a}
`;
const key: PoolKey = { srcIdentity: "spiffe://cluster.local/ns/default/sa/sleep", dstIdentities: ["spiffe://cluster.local/ns/default/sa/echo"], hboneIp: DST, hbonePort: 15008, srcIp: SRC };
let ctx: Awaited<ReturnType<typeof testContext>>;
let inbound: InboundServer;
const servers: net.Server[] = [];
let pendingDial: net.Socket | undefined;

beforeAll(async () => {
  // Port 8083: a dial that never completes.
  ctx = await testContext(YAML, { dialer: (ip, port) => (port === 8083 ? (pendingDial = new net.Socket()) : net.connect({ host: ip, port, allowHalfOpen: true })) });
  inbound = createInboundServer(ctx);
  const hbone = createProxyListener(ctx, "hbone", (s) => inbound.accept(s), inbound.unproven);
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  // Reads the request to its end, then answers 8 MiB and FIN.
  const bulk = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.resume();
    s.on("end", () => s.end(Buffer.alloc(8 * MiB, 0x62)));
  });
  for (const [server, port] of [[hbone, 15008], [echo, 8080], [bulk, 8081]] as const) await new Promise<void>((r) => server.listen(port, DST, () => r()));
  servers.push(hbone, echo, bulk);
});
afterAll(() => {
  inbound.close();
  for (const s of servers) s.close();
  ctx.dispose();
});

const newPool = (): HbonePool => createHbonePool({ certs: ctx.certs, logger: ctx.logger, maxStreamsPerConnection: 1000, idleTimeoutMs: 300_000, streamWindowSize: 4 * MiB, connectionWindowSize: 16 * MiB, receiveBudget: ctx.receiveBudget });
const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("stream ends", () => {
  test("refusals that are the destination's answer (nothing listening) do not end the connection's healthy streams", async () => {
    const pool = newPool();
    const healthy = await pool.connect(key, `${DST}:8080`, {});
    const ended = new Promise<string>((resolve) => healthy.once("close", () => resolve(`closed (rstCode ${healthy.rstCode})`)));
    let refused = 0;
    for (let i = 0; i < 120; i++) await pool.connect(key, `${DST}:9`, {}).catch(() => refused++);
    expect(refused).toBe(120);
    expect(await Promise.race([ended, sleepMs(1000).then(() => "open")])).toBe("open");
    const echoed = new Promise<string>((resolve) => healthy.once("data", (c: Buffer) => resolve(c.toString())));
    healthy.write("still here");
    expect(await echoed).toBe("still here");
    pool.close();
  });

  test("a completed stream whose slow client then resets is destroyed: its splice ends, its slot is freed", async () => {
    // Windows big enough for the whole answer: the stream completes while its data still waits for the client.
    const budget = createReceiveBudget({ streamWindow: 48 * MiB, sessionBytes: 64 * MiB, totalBytes: 256 * MiB });
    const pool = createHbonePool({ certs: ctx.certs, logger: ctx.logger, maxStreamsPerConnection: 100, idleTimeoutMs: 300_000, streamWindowSize: 48 * MiB, connectionWindowSize: 64 * MiB, receiveBudget: budget });
    let outcome: SpliceOutcome | undefined;
    const front = net.createServer({ allowHalfOpen: true }, (tcp) => {
      tcp.on("error", () => {});
      void pool.connect(key, `${DST}:8081`, {}).then((stream) => splice(tcp, stream, (o) => (outcome = o)));
    });
    await new Promise<void>((r) => front.listen(0, SRC, () => r()));
    const client = net.connect({ host: SRC, port: (front.address() as net.AddressInfo).port, allowHalfOpen: true });
    client.on("error", () => {});
    await new Promise((r) => client.once("connect", r));
    client.pause();
    client.end("GET");
    await sleepMs(1500);
    client.resetAndDestroy();
    for (let i = 0; i < 100 && !outcome; i++) await sleepMs(20);
    expect(outcome).toMatchObject({ reset: true });
    await sleepMs(100);
    expect(pool.stats().streams).toBe(0);
    front.close();
    pool.close();
    budget.close();
  });

  test("a stream whose HBONE connection ends during its dial is the connection's loss, not a client reset", async () => {
    const pool = newPool();
    const p = pool.connect(key, `${DST}:8083`, {}).catch((e: Error) => e);
    for (let i = 0; i < 100 && !pendingDial; i++) await sleepMs(20);
    expect(pendingDial).toBeDefined();
    pool.close();
    await p;
    await sleepMs(300);
    const rec = ctx.closed.at(-1);
    expect(rec?.error?.code).not.toBe("CLIENT_STREAM_RESET");
    expect(rec?.error?.code).toMatch(/^HBONE_/);
    expect(inbound.limits.usage().get("spiffe://cluster.local/ns/default/sa/sleep")?.resets ?? 0).toBe(0);
  });
});
