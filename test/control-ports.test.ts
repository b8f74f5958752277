import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loopbackEnv, startAgentProcess, type AgentProcess } from "@zt/harness";
import { CONTROL_LIMITS } from "@zt/ztunnel";
import { fdCount, settlesTo } from "./support/fds.js";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// The control ports (15000, 15020, 15021) under an idle flood, through a real agent on 127.50.1.1.
const HOST = "127.50.1.1";
const PORTS = { admin: 15000, stats: 15020, readiness: 15021 } as const;
const files = workloadDir();
let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess("node-a", { ...loopbackEnv(HOST, `${files.dir}/ca`), LOCAL_XDS_PATH: files.write("mesh.yaml", meshYaml(50)) });
});

afterAll(async () => {
  await agent?.stop();
});

interface Flood {
  readonly sockets: net.Socket[];
  /** Sockets the server has closed so far, with what it sent before closing. */
  readonly closed: string[];
}

/** `n` raw TCP connections that never finish a request: half send nothing, half a partial header. */
async function flood(port: number, n: number): Promise<Flood> {
  const f: Flood = { sockets: [], closed: [] };
  await Promise.all(
    Array.from({ length: n }, (_, i) => {
      const s = net.connect({ host: HOST, port });
      f.sockets.push(s);
      let got = "";
      s.on("data", (c: Buffer) => (got += c.toString("latin1")));
      s.on("error", () => {});
      s.once("close", () => f.closed.push(got));
      return new Promise<void>((resolve) => {
        s.once("connect", () => {
          if (i % 2 === 1) s.write("GET /healthz/ready HTTP/1.1\r\nHost: 127.50.1.1\r\n");
          resolve();
        });
        s.once("close", () => resolve());
      });
    }),
  );
  return f;
}

const metrics = async (): Promise<string> => {
  const r = await agent.get("stats", "/metrics");
  expect(r.status).toBe(200);
  return r.body;
};
const dropped = (text: string, listener: string): number => counter(text, "ztunnel_control_connections_dropped_total", { listener });
const timedOut = (f: Flood): number => f.closed.filter((got) => got.startsWith("HTTP/1.1 408")).length;
// Generous: the server's own deadline is headersTimeoutMs (checked every checkIntervalMs).
const CLOSE_WAIT_MS = CONTROL_LIMITS.headersTimeoutMs + CONTROL_LIMITS.checkIntervalMs + 10_000;

describe("control ports under an idle flood", () => {
  test("readiness caps its connections (a new one closes the oldest idle one), serves probes during the flood, closes idle ones within the header timeout", async () => {
    const pid = agent.proc.pid!;
    const baseline = fdCount(pid);
    const before = dropped(await metrics(), "readiness");
    const cap = CONTROL_LIMITS.maxConnections;
    const n = 3 * cap;

    const f = await flood(PORTS.readiness, n);
    // Metrics (their own listener) answer during the flood; each connection over the cap closed one and was counted.
    await until("drops counted", async () => dropped(await metrics(), "readiness") - before, (d) => d === n - cap);
    expect(fdCount(pid)).toBeLessThanOrEqual(baseline + cap + 10);
    await until("the closed ones seen by the client", () => f.closed.length, (c) => c >= n - cap);
    // A real probe during the flood is served: it makes room by closing the oldest idle connection.
    expect((await agent.get("readiness", "/healthz/ready")).status).toBe(200);
    expect(dropped(await metrics(), "readiness") - before).toBe(n - cap + 1);

    // The held ones, idle or stuck in their headers, are closed by the server (408), not by this test.
    await until("every flood connection closed by the agent", () => f.closed.length, (c) => c === n, CLOSE_WAIT_MS);
    expect(timedOut(f)).toBe(cap - 1);
    expect((await agent.get("readiness", "/healthz/ready")).status).toBe(200);
    expect(await settlesTo(pid, baseline)).toBeLessThanOrEqual(baseline);
  });

  test("admin and stats have the same cap and deadlines", async () => {
    const pid = agent.proc.pid!;
    const baseline = fdCount(pid);
    const text = await metrics();
    const before = { admin: dropped(text, "admin"), stats: dropped(text, "stats") };
    const extra = 20;
    const n = CONTROL_LIMITS.maxConnections + extra;
    const [admin, stats] = await Promise.all([flood(PORTS.admin, n), flood(PORTS.stats, n)]);
    await until("over-cap connections closed at once", () => admin.closed.length + stats.closed.length, (c) => c >= 2 * extra);
    expect(fdCount(pid)).toBeLessThanOrEqual(baseline + 2 * CONTROL_LIMITS.maxConnections + 10);
    await until("every flood connection closed by the agent", () => admin.closed.length + stats.closed.length, (c) => c === 2 * n, CLOSE_WAIT_MS);
    expect([timedOut(admin), timedOut(stats)]).toEqual([CONTROL_LIMITS.maxConnections, CONTROL_LIMITS.maxConnections]);
    const after = await metrics();
    expect([dropped(after, "admin") - before.admin, dropped(after, "stats") - before.stats]).toEqual([extra, extra]);
    expect((await agent.get("admin", "/config_dump")).status).toBe(200);
    expect(await settlesTo(pid, baseline)).toBeLessThanOrEqual(baseline);
  });
});
