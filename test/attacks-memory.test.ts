import { readFileSync } from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startEcho, startLoopbackMesh, type AgentProcess, type LoopbackMesh } from "@zt/harness";
import { createCertManager, loadOrCreateCa, type CertManager, type WorkloadCertificate } from "@zt/identity";
import { rawHboneClient } from "./support/faulty-peer.js";
import { ErrorCode, errorCodeOf, Frame } from "./support/h2-raw.js";
import { flood, type Flood } from "./support/h2-attacks.js";
import { steadyFlow } from "./support/legit-flow.js";
import { workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// One mesh identity ("evil", with a valid certificate) tries to make node-b's agent hold
// memory: streams towards a destination that never reads, and streams whose client never
// opens its window while an echo answers. Four connections of 200 streams each, as the
// issue measured. A legitimate flow (sleep on node-a -> echo on node-b, hashed) runs all
// along. node-b caps an identity at 300 streams here: past them every stream is refused
// (429), and the destination pods' own kernel buffers stay bounded on this loopback host.
const NET = 65;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const MiB = 1 << 20;
const yaml = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${A}.10"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${B}.10"], protocol: HBONE, node: node-b}
- {name: sink, namespace: default, serviceAccount: sink, workloadIps: ["${B}.11"], protocol: HBONE, node: node-b}
- {name: mirror, namespace: default, serviceAccount: mirror, workloadIps: ["${B}.12"], protocol: HBONE, node: node-b}
`;
let mesh: LoopbackMesh;
let certs: CertManager;
let evil: WorkloadCertificate;
const servers: net.Server[] = [];
const sinkSockets: net.Socket[] = [];

beforeAll(async () => {
  mesh = await startLoopbackMesh({
    net: NET,
    nodes: ["node-a", "node-b"],
    workloadsFile: workloadDir().write("mesh.yaml", yaml),
    env: { HBONE_MAX_STREAMS_PER_IDENTITY: "300", HBONE_MAX_CONNECTIONS_PER_IDENTITY: "8" },
  });
  certs = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  evil = await certs.fetch("spiffe://cluster.local/ns/default/sa/evil");
  servers.push(await startEcho(`${B}.10`, 8080), await startEcho(`${B}.12`, 8080));
  // The sink accepts and never reads.
  const sink = net.createServer({ pauseOnConnect: true }, (s) => {
    s.on("error", () => {});
    sinkSockets.push(s);
  });
  await new Promise<void>((r) => sink.listen(8080, `${B}.11`, () => r()));
  servers.push(sink);
});
afterAll(async () => {
  for (const s of sinkSockets) s.destroy();
  for (const s of servers) s.close();
  certs?.close();
  await mesh?.stop();
});

const b = (): AgentProcess => mesh.agents[1]!;
const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${b().proc.pid!}/status`, "utf8"))![1]) / 1024;
const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Run four 200-stream floods at `target` for `seconds`, a legitimate hashed flow beside them; returns the peak RSS and what the flood got. */
async function attack(target: string, zeroWindow: boolean, seconds: number): Promise<{ base: number; peak: number; after: number; opened: number; pushedMiB: number; calmedDown: number }> {
  const legit = steadyFlow({ host: mesh.host(0), port: 15080 }, `${A}.10`, `${B}.10`, 8080);
  await until("legit flow running", () => legit.ok(), (n) => n >= 2, 10_000);
  const base = rssMiB();
  const floods: Flood[] = [];
  for (let i = 0; i < 4; i++) floods.push(await flood({ target, authority: `${target}:8080`, cert: evil, streams: 200, zeroWindow }));
  let peak = base;
  for (let t = 0; t < seconds * 4; t++) {
    await sleepMs(250);
    peak = Math.max(peak, rssMiB());
  }
  const opened = floods.reduce((n, f) => n + f.opened(), 0);
  // Connections that kept opening streams past the cap were told to go away.
  const calmedDown = floods.filter((f) => f.conn.frames.some((fr) => fr.type === Frame.GOAWAY && errorCodeOf(fr) === ErrorCode.NO_ERROR)).length;
  const pushedMiB = floods.reduce((n, f) => n + f.pusher.sent, 0) / MiB;
  for (const f of floods) f.close();
  const { ok, failures } = await legit.stop();
  expect(failures).toEqual([]);
  expect(ok).toBeGreaterThan(2);
  // Memory goes back once the load is over (the agent collects and trims when its connections
  // drop). The zero-window floods' connections may last until the keepalive timeout (20 s),
  // then the reducer looks every 10 s: on a loaded machine that can take most of a minute.
  const after = await until("RSS back down", rssMiB, (r) => r < base + 64, 90_000);
  return { base, peak, after, opened, pushedMiB, calmedDown };
}

describe("one identity cannot make the agent buffer its memory away", () => {
  test("streams towards a destination that never reads: bounded RSS, capped streams, legit flow intact, memory returned", { timeout: 180_000 }, async () => {
    const r = await attack(`${B}.11`, false, 15);
    // 300 streams (the cap) opened; the other 500 were refused.
    expect(r.opened).toBe(300);
    // Without the receive budget the agent would hold up to 300 × the 4 MiB stream window.
    expect(r.peak - r.base).toBeLessThan(256);
    // Refused with 429 and counted, until each connection had 100 refusals and got GOAWAY.
    expect(r.calmedDown).toBeGreaterThan(0);
    const m = (await b().get("stats", "/metrics")).body;
    expect(counter(m, "istio_tcp_connections_failed_total", { response_flags: "OVERLOAD", source_principal: "spiffe://cluster.local/ns/default/sa/evil" })).toBeGreaterThanOrEqual(100 * r.calmedDown);
  });

  test("a client that never opens its window against an echo: bounded RSS, legit flow intact, memory returned", { timeout: 180_000 }, async () => {
    const r = await attack(`${B}.12`, true, 15);
    expect(r.opened).toBe(300);
    expect(r.peak - r.base).toBeLessThan(256);
  });

  test("past the per-identity connection cap, new connections of that identity are refused; others are not", { timeout: 90_000 }, async () => {
    // The floods' connections are gone on node-b's side too: at once when node-b reads the
    // peer's FIN, else (its reads paused by back-pressure) at the keepalive timeout, 20 s.
    await until("evil holds nothing", async () => (await b().get("stats", "/metrics")).body, (m) => counter(m, "ztunnel_hbone_peer_connections", { source_principal: "spiffe://cluster.local/ns/default/sa/evil" }) === 0, 60_000);
    const conns = [];
    for (let i = 0; i < 12; i++) conns.push(await rawHboneClient(`${B}.10`, 15008, evil));
    await until("4 refused", () => conns.filter((c) => c.socket.destroyed).length, (n) => n === 4);
    await sleepMs(500);
    expect(conns.filter((c) => c.socket.destroyed)).toHaveLength(4);
    const legit = steadyFlow({ host: mesh.host(0), port: 15080 }, `${A}.10`, `${B}.10`, 8080);
    await until("legit passes", () => legit.ok(), (n) => n >= 2);
    expect((await legit.stop()).failures).toEqual([]);
    for (const c of conns) c.socket.destroy();
  });
});
