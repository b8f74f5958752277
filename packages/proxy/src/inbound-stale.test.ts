import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseLocalConfig } from "@zt/state";
import { createInboundServer, type InboundServer } from "./inbound.js";
import { createProxyListener } from "./listener.js";
import { createHbonePool, type HbonePool, type PoolKey } from "./pool.js";
import { testContext } from "./test-support/context.js";

// An HBONE connection is made to one workload of this node, with its certificate. When the
// address stops being that (the pod went to another node keeping its IP; a pod of another
// identity took the IP over), the inbound server tells the connection GOAWAY, so the client's
// pool stops reusing it. A real pool and inbound server on 127.71.1.10:15008.
const DST = "127.71.1.10";
const SRC = "127.71.1.5";
const ECHO_ID = "spiffe://cluster.local/ns/default/sa/echo";
const OTHER_ID = "spiffe://cluster.local/ns/default/sa/other";
const mesh = (dst: { name: string; sa: string; node: string }): string => `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${SRC}"], protocol: HBONE, node: node-a}
- {name: ${dst.name}, namespace: default, serviceAccount: ${dst.sa}, workloadIps: ["${DST}"], protocol: HBONE, node: ${dst.node}}
`;
const ECHO_HERE = { name: "echo", sa: "echo", node: "node-a" };
const key = (dstIdentity: string): PoolKey => ({ srcIdentity: "spiffe://cluster.local/ns/default/sa/sleep", dstIdentities: [dstIdentity], hboneIp: DST, hbonePort: 15008, srcIp: SRC });
let ctx: Awaited<ReturnType<typeof testContext>>;
let inbound: InboundServer;
const servers: net.Server[] = [];

beforeAll(async () => {
  ctx = await testContext(mesh(ECHO_HERE));
  inbound = createInboundServer(ctx);
  const hbone = createProxyListener(ctx, "hbone", (s) => inbound.accept(s), inbound.unproven);
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  for (const [server, port] of [[hbone, 15008], [echo, 8080]] as const) await new Promise<void>((r) => server.listen(port, DST, () => r()));
  servers.push(hbone, echo);
});
afterAll(() => {
  inbound.close();
  for (const s of servers) s.close();
  ctx.dispose();
});

const newPool = (): HbonePool => createHbonePool({ certs: ctx.certs, logger: ctx.logger, maxStreamsPerConnection: 100, idleTimeoutMs: 300_000, streamWindowSize: 4 << 20, connectionWindowSize: 16 << 20, receiveBudget: ctx.receiveBudget });
const setMesh = (dst: { name: string; sa: string; node: string }): void => ctx.store.replace(parseLocalConfig(mesh(dst), "test.yaml", { trustDomain: "cluster.local", clusterId: "c1" }));
async function until<T>(what: string, f: () => T, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const echoed = (s: NodeJS.ReadWriteStream, text: string): Promise<string> =>
  new Promise((resolve) => {
    s.once("data", (c: Buffer) => resolve(c.toString()));
    s.write(text);
  });

describe("inbound HBONE connections whose address is no longer their workload's", () => {
  test("the workload leaves this node (same IP): GOAWAY; the stream in flight finishes, and the pool holds the connection no more", async () => {
    setMesh(ECHO_HERE);
    const pool = newPool();
    try {
      const open = await pool.connect(key(ECHO_ID), `${DST}:8080`, {});
      expect(await echoed(open, "before")).toBe("before");
      expect(pool.stats()).toMatchObject({ connections: 1, streams: 1 });
      setMesh({ ...ECHO_HERE, node: "node-b" });
      await until("the pool to let the connection go", () => pool.stats().connections, (n) => n === 0);
      expect(await echoed(open, "in flight")).toBe("in flight");
      open.end();
      await until("the server's side gone", () => inbound.stats().connections, (n) => n === 0);
    } finally {
      pool.close();
    }
  });

  test("a workload of another identity takes the IP over: GOAWAY; the next connection shows the new identity's certificate", async () => {
    setMesh(ECHO_HERE);
    const pool = newPool();
    try {
      const first = await pool.connect(key(ECHO_ID), `${DST}:8080`, {});
      expect(await echoed(first, "echo's")).toBe("echo's");
      first.end();
      expect(pool.stats().connections).toBe(1);
      setMesh({ name: "other", sa: "other", node: "node-a" });
      await until("the pool to let echo's connection go", () => pool.stats().connections, (n) => n === 0);
      const next = await pool.connect(key(OTHER_ID), `${DST}:8080`, {});
      expect(await echoed(next, "other's")).toBe("other's");
      next.end();
      // The server now presents other's certificate: a client that still expects echo is refused.
      await expect(pool.connect(key(ECHO_ID), `${DST}:8080`, {})).rejects.toThrow(/echo/);
    } finally {
      pool.close();
    }
  });

  test("nothing changes for connections whose workload stays: a change elsewhere in the store sends no GOAWAY", async () => {
    setMesh(ECHO_HERE);
    const pool = newPool();
    try {
      const s = await pool.connect(key(ECHO_ID), `${DST}:8080`, {});
      setMesh(ECHO_HERE);
      await new Promise((r) => setTimeout(r, 200));
      expect(pool.stats().connections).toBe(1);
      expect(await echoed(s, "same")).toBe("same");
      s.end();
    } finally {
      pool.close();
    }
  });
});
