import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, httpGet, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createCertManager, loadOrCreateCa, type CertManager } from "@zt/identity";
import { startFakePeer, type FakePeer } from "./support/fake-peer.js";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// One real agent (node-a) on 127.14.1.x; node-b's agent is replaced by a recording
// HBONE peer, to check what the outbound side puts on the wire and how it pools.
const NET = 14;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const extra = `- {name: sleep2, namespace: other, serviceAccount: sleep2, workloadIps: ["${A}.20"], protocol: HBONE, node: node-a, canonicalName: sleep2}\n`;
let mesh: LoopbackMesh;
let certs: CertManager;
let peer: FakePeer;
const socks = (): { host: string; port: number } => ({ host: mesh.host(0), port: 15080 });

beforeAll(async () => {
  const files = workloadDir();
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a"], workloadsFile: files.write("mesh.yaml", meshYaml(NET).replace("services:\n", `${extra}services:\n`)) });
  certs = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  peer = await startFakePeer(`${B}.10`, await certs.fetch("spiffe://cluster.local/ns/default/sa/echo"));
});

afterAll(async () => {
  await peer?.close();
  certs?.close();
  await mesh?.stop();
});

describe("the outbound side on the wire", () => {
  test("TLS 1.3, ALPN h2, the source's certificate, and the contract's CONNECT headers", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `127.${NET}.3.1`, 80, 10_000);
    expect(r.ok).toBe(true);
    const conn = peer.connections.find((c) => c.clientIdentity === "spiffe://cluster.local/ns/default/sa/sleep")!;
    expect(conn).toMatchObject({ protocol: "TLSv1.3", alpn: "h2" });
    const h = conn.streams.at(-1)!;
    expect(h[":method"]).toBe("CONNECT");
    expect(h[":authority"]).toBe(`${B}.10:8080`);
    expect(h[":path"]).toBeUndefined();
    expect(h["forwarded"]).toBe(`for="${r.srcAddr}";host=echo.default.svc.cluster.local`);
    expect(h["baggage"]).toBe("k8s.namespace.name=default,k8s.pod.name=sleep,service.name=sleep,service.version=v1");
    expect(h["traceparent"]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  });

  test("connections from one source share one pooled HBONE connection (per data-path worker: each has its own pool)", async () => {
    const workers = (JSON.parse((await httpGet(`${mesh.host(0)}:15000`, "/config_dump")).body) as { config: { workerThreads: number } }).config.workerThreads;
    const results = await Promise.all(Array.from({ length: 20 }, () => echoFlow(socks(), `${A}.10`, `${B}.10`, 8080, 2000)));
    expect(results.every((x) => x.ok)).toBe(true);
    const sleep = peer.connections.filter((c) => c.clientIdentity?.endsWith("/sa/sleep"));
    expect(sleep.length).toBeGreaterThanOrEqual(1);
    expect(sleep.length).toBeLessThanOrEqual(workers);
    expect(sleep.reduce((n, c) => n + c.streams.length, 0)).toBeGreaterThanOrEqual(20);
  });

  test("another source identity never shares that connection", async () => {
    expect((await echoFlow(socks(), `${A}.20`, `${B}.10`, 8080, 2000)).ok).toBe(true);
    const other = peer.connections.filter((c) => c.clientIdentity === "spiffe://cluster.local/ns/other/sa/sleep2");
    expect(other).toHaveLength(1);
    expect(other[0]!.streams.every((h) => String(h["forwarded"]).startsWith(`for="${A}.20:`))).toBe(true);
  });

  test("a peer with the wrong identity gets no stream at all", async () => {
    const impostor = await startFakePeer(`${B}.11`, await certs.fetch("spiffe://cluster.local/ns/default/sa/db"));
    try {
      // echo-sick (127.14.2.11) is sa/echo in the mesh file, but the server there presents sa/db.
      const r = await echoFlow(socks(), `${A}.10`, `${B}.11`, 8080, 1000);
      expect(r.ok).toBe(false);
      const line = await until("identity log", () => mesh.agents[0]!.accessLogs().find((l) => l["dst.addr"] === `${B}.11:8080`), (l) => l !== undefined);
      expect(line["response_flags"]).toBe("IDENTITY_ERROR");
      expect(impostor.connections.flatMap((c) => c.streams)).toHaveLength(0);
    } finally {
      await impostor.close();
    }
  });
});

describe("a peer whose certificate does not chain to the mesh roots", () => {
  test("is a TLS failure (PEER_CERT_UNTRUSTED), not a connect failure, and nothing is sent", async () => {
    const otherRoot = mkdtempSync(path.join(tmpdir(), "zt-other-"));
    const other = createCertManager({ source: await loadOrCreateCa({ dir: path.join(otherRoot, "ca"), trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
    const impostor = await startFakePeer(`${B}.11`, await other.fetch("spiffe://cluster.local/ns/default/sa/echo"));
    try {
      const lines = (): Record<string, unknown>[] => mesh.agents[0]!.accessLogs().filter((l) => l["dst.addr"] === `${B}.11:8080`);
      const before = lines().length;
      expect((await echoFlow(socks(), `${A}.10`, `${B}.11`, 8080, 2000)).ok).toBe(false);
      const line = (await until("TLS failure line", lines, (l) => l.length > before)).at(-1);
      expect(line).toMatchObject({ response_flags: "TLS_FAILURE" });
      expect(String(line!["error"])).toMatch(/^PEER_CERT_UNTRUSTED:/);
      expect(impostor.connections.every((c) => c.streams.length === 0)).toBe(true);
    } finally {
      await impostor.close();
      other.close();
      rmSync(otherRoot, { recursive: true, force: true });
    }
  });
});
