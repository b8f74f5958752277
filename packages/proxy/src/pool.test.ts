import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { ClientHttp2Stream } from "node:http2";
import type { ProxyContext } from "./context.js";
import { createInboundServer, type InboundServer } from "./inbound.js";
import { createProxyListener } from "./listener.js";
import { createHbonePool, type HbonePool, type PoolKey } from "./pool.js";
import { testContext } from "./test-support/context.js";

// The HBONE pool against a real inbound server on 127.31.1.10:15008 (mTLS, HTTP/2).
const YAML = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["127.31.1.5"], protocol: HBONE, node: node-a}
- {name: other, namespace: default, serviceAccount: other, workloadIps: ["127.31.1.6"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["127.31.1.10"], protocol: HBONE, node: node-a}
`;
const ECHO_ID = "spiffe://cluster.local/ns/default/sa/echo";
let ctx: ProxyContext & { dispose(): void };
let inbound: InboundServer;
let listener: net.Server;
let echo: net.Server;
let accepted = 0;
let open = 0;

beforeAll(async () => {
  ctx = await testContext(YAML);
  inbound = createInboundServer(ctx);
  listener = createProxyListener(ctx, "hbone", (s) => {
    accepted++;
    open++;
    s.once("close", () => open--);
    inbound.accept(s);
  });
  await new Promise<void>((r) => listener.listen(15008, "127.31.1.10", () => r()));
  echo = net.createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(8080, "127.31.1.10", () => r()));
});

afterAll(async () => {
  inbound.close();
  listener.close();
  echo.close();
  ctx.dispose();
});

function key(srcIdentity: string, srcIp: string): PoolKey {
  return { srcIdentity, dstIdentities: [ECHO_ID], hboneIp: "127.31.1.10", hbonePort: 15008, srcIp };
}

function newPool(over: { maxStreamsPerConnection?: number; idleTimeoutMs?: number; connectAttempts?: number } = {}): HbonePool {
  return createHbonePool({
    certs: ctx.certs,
    logger: ctx.logger,
    maxStreamsPerConnection: over.maxStreamsPerConnection ?? 100,
    idleTimeoutMs: over.idleTimeoutMs ?? 300_000,
    streamWindowSize: 4 << 20,
    connectionWindowSize: 16 << 20,
    ...(over.connectAttempts ? { connectAttempts: over.connectAttempts } : {}),
  });
}

const connectMany = (pool: HbonePool, k: PoolKey, n: number): Promise<ClientHttp2Stream[]> => Promise.all(Array.from({ length: n }, () => pool.connect(k, "127.31.1.10:8080", {})));

async function waitFor(what: string, ok: () => boolean, timeoutMs = 5000): Promise<void> {
  for (let i = 0; i < timeoutMs / 50 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

describe("HBONE pool", () => {
  test("a stream that got its 200 keeps nothing of the wait for it: an idle connection would hold it all its life", async () => {
    const pool = newPool();
    const [s] = await connectMany(pool, key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), 1);
    try {
      expect(s!.listenerCount("timeout")).toBe(0);
      expect(s!.listenerCount("response")).toBe(0);
      // No timer object left on the stream either (Node's stream.setTimeout(0) keeps the cleared one).
      const timeout = Object.getOwnPropertySymbols(s).find((x) => x.description === "timeout");
      expect(timeout === undefined ? null : (s as unknown as Record<symbol, unknown>)[timeout] ?? null).toBeNull();
      // The pool's one (the slot), the HBONE connection's and the receive budget's.
      expect(s!.listenerCount("close")).toBe(3);
      // Nor Node's copy of the request headers, read only for a 421 that can no longer come.
      expect(s!.sentHeaders).toBeUndefined();
    } finally {
      s!.close();
      pool.close();
    }
  });

  test("concurrent connects for one key share one dial and one connection", async () => {
    const pool = newPool();
    const before = accepted;
    const streams = await connectMany(pool, key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), 25);
    expect(accepted - before).toBe(1);
    expect(pool.stats()).toMatchObject({ connections: 1, streams: 25, keys: 1 });
    for (const s of streams) s.close();
    pool.close();
  });

  test("at most maxStreamsPerConnection streams per connection, even for a burst", async () => {
    const pool = newPool({ maxStreamsPerConnection: 3 });
    const before = accepted;
    const streams = await connectMany(pool, key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), 7);
    expect(accepted - before).toBe(3);
    expect(pool.stats()).toMatchObject({ connections: 3, streams: 7 });
    for (const s of streams) s.close();
    pool.close();
  });

  test("another source identity never shares a connection", async () => {
    const pool = newPool();
    const before = accepted;
    const a = await pool.connect(key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), "127.31.1.10:8080", {});
    const b = await pool.connect(key("spiffe://cluster.local/ns/default/sa/other", "127.31.1.6"), "127.31.1.10:8080", {});
    expect(accepted - before).toBe(2);
    expect(pool.stats().keys).toBe(2);
    a.close();
    b.close();
    pool.close();
  });

  test("an unused connection is released after the idle timeout", async () => {
    await waitFor("earlier connections gone", () => open === 0);
    const pool = newPool({ idleTimeoutMs: 500 });
    const baseline = open;
    const s = await pool.connect(key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), "127.31.1.10:8080", {});
    expect(open).toBe(baseline + 1);
    s.close();
    await waitFor("idle release", () => pool.stats().connections === 0 && open === baseline);
    pool.close();
  });

  test("drain() closes connections as their streams end but still serves connects (the agent's own, accepted before); after close() they fail with DRAINING; no sockets left", async () => {
    const pool = newPool();
    const baseline = open;
    const k = key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5");
    const s = await pool.connect(k, "127.31.1.10:8080", {});
    pool.drain();
    // A connection accepted just before the drain reaches the pool now: it is one to finish, not to refuse.
    const late = await pool.connect(k, "127.31.1.10:8080", {});
    expect(pool.stats()).toMatchObject({ connections: 1, streams: 1 });
    for (const x of [s, late]) x.close();
    await waitFor("drained connections closed once idle", () => pool.stats().connections === 0 && open === baseline);
    pool.close();
    await expect(pool.connect(k, "127.31.1.10:8080", {})).rejects.toMatchObject({ code: "DRAINING" });
    await waitFor("server side closed", () => open === baseline);
  });

  test("close() after drain() also ends streams still open on connections the drain retired", async () => {
    const pool = newPool();
    const baseline = open;
    const s = await pool.connect(key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), "127.31.1.10:8080", {});
    pool.drain();
    expect(pool.stats().connections).toBe(0);
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    pool.close();
    await closed;
    expect(s.destroyed).toBe(true);
    await waitFor("server side closed", () => open === baseline);
  });

  test("CONNECTs overtaken by the peer's GOAWAY (REFUSED_STREAM) are retried on a new connection", async () => {
    // A peer of its own on :15009, so that its drain touches no other test's sessions.
    const peer = createInboundServer(ctx);
    const server = createProxyListener(ctx, "hbone", (s) => peer.accept(s));
    await new Promise<void>((r) => server.listen(15009, "127.31.1.10", () => r()));
    const pool = newPool();
    const k = { ...key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), hbonePort: 15009 };
    try {
      const first = await pool.connect(k, "127.31.1.10:8080", {});
      // The peer drains (GOAWAY naming the last stream it took) while more CONNECTs are queued on its connection.
      peer.drain();
      const more = await connectMany(pool, k, 20);
      expect(more).toHaveLength(20);
      const echoed = await new Promise<string>((resolve) => {
        more[0]!.once("data", (b: Buffer) => resolve(b.toString()));
        more[0]!.write("ping");
      });
      expect(echoed).toBe("ping");
      for (const s of [first, ...more]) s.close();
    } finally {
      pool.close();
      peer.close();
      server.close();
    }
  });

  test("close() ends a connection whose GOAWAY refused queued CONNECTs while a stream is still open on it", async () => {
    const peer = createInboundServer(ctx);
    const server = createProxyListener(ctx, "hbone", (s) => peer.accept(s));
    await new Promise<void>((r) => server.listen(15009, "127.31.1.10", () => r()));
    // One try: the refusals reach the caller, as when every retry was refused too.
    const pool = newPool({ connectAttempts: 1 });
    const k = { ...key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), hbonePort: 15009 };
    try {
      const first = await pool.connect(k, "127.31.1.10:8080", {});
      peer.drain();
      const settled = await Promise.allSettled(Array.from({ length: 20 }, () => pool.connect(k, "127.31.1.10:8080", {})));
      expect(settled.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason.code)).toContain("HBONE_STREAM_REFUSED");
      const closed = new Promise<void>((r) => first.once("close", () => r()));
      // Resetting `first` here with anything but CANCEL used to spin in nghttp2 for ever.
      pool.close();
      await closed;
      expect(first.destroyed).toBe(true);
    } finally {
      pool.close();
      peer.close();
      server.close();
    }
  });

  test("a CONNECT the peer refuses rejects with the peer's answer", async () => {
    const pool = newPool();
    await expect(pool.connect(key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), "127.31.1.10:8099", {})).rejects.toMatchObject({ code: "HBONE_UPSTREAM_FAILED", flag: "CONNECT" });
    await expect(pool.connect(key("spiffe://cluster.local/ns/default/sa/sleep", "127.31.1.5"), "127.31.9.9:8080", {})).rejects.toMatchObject({ code: "HBONE_BAD_REQUEST" });
    pool.close();
  });
});

describe("keepalive", () => {
  test("a client that stops answering PINGs is dropped by the inbound side", { timeout: 40_000 }, async () => {
    const { spawn } = await import("node:child_process");
    const { fileURLToPath } = await import("node:url");
    const cert = await ctx.certs.fetch("spiffe://cluster.local/ns/default/sa/sleep");
    const fast = createInboundServer(ctx, { pingIntervalMs: 200, pingTimeoutMs: 400 });
    const server = createProxyListener(ctx, "hbone", (s) => fast.accept(s));
    await new Promise<void>((r) => server.listen(15008, "127.31.1.5", () => r()));
    let peerOpen = 0;
    server.on("connection", (s: net.Socket) => {
      peerOpen++;
      s.once("close", () => peerOpen--);
    });
    // A separate process holds an HBONE connection, then is frozen (SIGSTOP): TCP stays up, PINGs go unanswered.
    const script = fileURLToPath(new URL("./test-support/hbone-idle-client.mjs", import.meta.url));
    const child = spawn(process.execPath, [script, "127.31.1.5", JSON.stringify({ key: cert.keyPem, cert: cert.certChain.join("\n"), ca: cert.roots })], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((r) => child.stdout!.once("data", () => r()));
      await waitFor("connection accepted", () => peerOpen === 1, 15_000);
      child.kill("SIGSTOP");
      await waitFor("frozen client dropped", () => peerOpen === 0, 15_000);
    } finally {
      child.kill("SIGKILL");
      fast.close();
      server.close();
    }
  });
});
