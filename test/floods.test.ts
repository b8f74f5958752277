import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loopbackEnv, socksConnect, startAgentProcess, startEcho, type AgentProcess } from "@zt/harness";
import { hashedRoundTrip } from "./support/legit-flow.js";
import { createCertManager, loadOrCreateCa, type CertManager } from "@zt/identity";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fdCount } from "./support/fds.js";
import { rawHboneClient } from "./support/faulty-peer.js";
import { Frame } from "./support/h2-raw.js";
import { workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// Floods that need no credentials, or only a valid certificate, against node-b's agent
// running with a small open-files limit (prlimit --nofile=700): it stays up, its
// control ports and its data path keep working, what it holds stays within its
// descriptor budget, and it says so on readiness when it is under pressure.
// Agents on 127.64.x.y; node-a's SOCKS5 carries the legitimate traffic.
const NET = 64;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const yaml = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${A}.10"], protocol: HBONE, node: node-a}
- {name: curl, namespace: default, serviceAccount: curl, workloadIps: ["${A}.11"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${B}.10"], protocol: HBONE, node: node-b}
`;
const file = workloadDir().write("mesh.yaml", yaml);
const caRoot = mkdtempSync(path.join(tmpdir(), "zt-ca-"));
const caDir = path.join(caRoot, "cacerts");
let a: AgentProcess;
let b: AgentProcess;
let certs: CertManager;
let echo: net.Server;
const held: net.Socket[] = [];

beforeAll(async () => {
  a = await startAgentProcess("node-a", { ...loopbackEnv(`${A}.1`, caDir), LOCAL_XDS_PATH: file });
  b = await startAgentProcess("node-b", { ...loopbackEnv(`${B}.1`, caDir), LOCAL_XDS_PATH: file, HBONE_IDLE_TIMEOUT: "1s" }, { prefix: ["prlimit", "--nofile=700:700", "--"] });
  certs = createCertManager({ source: await loadOrCreateCa({ dir: caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  echo = await startEcho(`${B}.10`, 8080);
});
afterAll(async () => {
  for (const s of held) s.destroy();
  echo?.close();
  certs?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  rmSync(caRoot, { recursive: true, force: true });
});

/** `n` TCP connections to host:port that send nothing (or `bytes`), held until the test ends. */
async function idle(host: string, port: number, n: number, bytes?: string): Promise<net.Socket[]> {
  const out = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<net.Socket>((resolve) => {
        const s = net.connect({ host, port });
        s.on("error", () => {});
        s.once("connect", () => {
          if (bytes) s.write(bytes);
          resolve(s);
        });
        s.once("close", () => resolve(s));
      }),
    ),
  );
  held.push(...out);
  return out;
}

/** A hashed round trip from `src` (a workload of node-a) through both agents to the echo on node-b. */
const legitFlow = (src: string, size = 200_000): Promise<boolean> =>
  hashedRoundTrip({ host: `${A}.1`, port: 15080 }, src, `${B}.10`, 8080, size).then(
    () => true,
    () => false,
  );

const get = (which: "admin" | "stats" | "readiness", p: string): Promise<{ status: number; body: string }> => b.get(which, p);

describe("floods of connections that never prove anything", () => {
  test("idle connections on every port of node-b: the agent stays up and serves control and data", async () => {
    const pid = b.proc.pid!;
    const sizes: Record<string, number> = {};
    for (const [host, port] of [[`${B}.10`, 15008], [`${B}.1`, 15080], [`${B}.1`, 15001], [`${B}.1`, 15006], [`${B}.1`, 15021], [`${B}.1`, 15020], [`${B}.1`, 15000]] as const) {
      await idle(host, port, 300);
      sizes[port] = fdCount(pid);
    }
    // Half-sent HTTP requests on the control ports too.
    await idle(`${B}.1`, 15021, 100, "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n");
    // Within the descriptor limit the whole time: nothing was refused for EMFILE.
    expect(Math.max(...Object.values(sizes))).toBeLessThan(700);
    // Control and data still work during the flood, and /config_dump says what the data path holds.
    const dump = await get("admin", "/config_dump");
    expect(dump.status).toBe(200);
    const dataPath = (JSON.parse(dump.body) as { dataPath: { descriptors: { capacity: number; limit: number; reserve: number; listeners: Record<string, number> } } }).dataPath;
    expect(dataPath.descriptors).toMatchObject({ limit: 700, reserve: 256, capacity: 444 });
    // At most its share (111) once the flood's evictions are through: a socket evicted to make room
    // counts until its close, and the dump, read by the main thread, may land while a worker evicts.
    const hbone = async (): Promise<number> => (JSON.parse((await get("admin", "/config_dump")).body) as { dataPath: { descriptors: { listeners: Record<string, number> } } }).dataPath.descriptors.listeners["hbone"] ?? NaN;
    expect(await until("the hbone listener within its share", hbone, (n) => n <= 111)).toBeLessThanOrEqual(111);
    expect((await get("stats", "/metrics")).status).toBe(200);
    expect([200, 503]).toContain((await get("readiness", "/healthz/ready")).status);
    // A new HBONE connection (a source identity with no pooled connection yet) gets through.
    expect(await legitFlow(`${A}.11`)).toBe(true);
    const metrics = (await get("stats", "/metrics")).body;
    expect(counter(metrics, "ztunnel_connections_dropped_total", { listener: "hbone" }) + counter(metrics, "ztunnel_connections_dropped_total", { listener: "socks5" })).toBeGreaterThan(0);
    for (const s of held.splice(0)) s.destroy();
    expect(await legitFlow(`${A}.10`)).toBe(true);
    expect(b.proc.exitCode).toBeNull();
  });

  test("readiness reports descriptor pressure while the data path is nearly full, and recovers", async () => {
    // Open streams hold an upstream descriptor each on node-b; idle handshakes fill the rest.
    const streams = await Promise.all(Array.from({ length: 300 }, () => socksConnect({ proxy: { host: `${A}.1`, port: 15080 }, localAddress: `${A}.10`, host: `${B}.10`, port: 8080 })));
    held.push(...streams);
    for (const s of streams) s.on("error", () => {});
    await idle(`${B}.10`, 15008, 200);
    const r = await until("pressure on readiness", () => get("readiness", "/healthz/ready"), (x) => x.status === 503);
    expect(r.body).toContain("descriptor pressure");
    for (const s of held.splice(0)) s.destroy();
    await until("ready again", () => get("readiness", "/healthz/ready"), (x) => x.status === 200, 15_000);
  });
});

describe("HTTP/2 connections that never open a stream", () => {
  test("are closed by node-b after HBONE_IDLE_TIMEOUT, PINGs answered or not", async () => {
    const conn = await rawHboneClient(`${B}.10`, 15008, await certs.fetch("spiffe://cluster.local/ns/default/sa/idler"));
    held.push(conn.socket as net.Socket);
    const goaway = await conn.waitFor((f) => f.type === Frame.GOAWAY, 10_000);
    expect(goaway.payload.readUInt32BE(4)).toBe(0);
    await new Promise<void>((resolve) => (conn.socket.destroyed ? resolve() : conn.socket.once("close", () => resolve())));
  });
});
