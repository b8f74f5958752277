import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { httpGet, selfSignedServingCert, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { loadOrCreateCa, type BuiltinCa } from "@zt/identity";
import { startFakeIstioCa, type FakeIstioCa } from "../packages/istio/src/test-support/fake-ca.js";
import { until } from "./support/metrics.js";

// A real agent (`ztunnel run`) with CA_ADDRESS at a FAKE Istio CA on loopback (gRPC over
// TLS) that is down when the agent starts: readiness says which certificates it waits for
// and why, nothing crashes, and the agent becomes ready once the CA answers.
const NET = 94;
const dir = mkdtempSync(path.join(tmpdir(), "zt-remote-ca-"));
const serving = selfSignedServingCert(["127.0.0.1"]);
let mesh: LoopbackMesh;
let ca: FakeIstioCa | undefined;
let port: number;
let meshCa: BuiltinCa;

const ready = (): Promise<{ status: number; body: string }> => httpGet(`${mesh.host(0)}:15021`, "/healthz/ready");

beforeAll(async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  meshCa = await loadOrCreateCa({ dir: path.join(dir, "mesh-ca"), trustDomain: "cluster.local" });
  // The FAKE CA serves TLS with a self-signed certificate: the agent's CA_ROOT_CA trusts it and the mesh root.
  writeFileSync(path.join(dir, "root.pem"), meshCa.roots().join("") + serving.cert);
  writeFileSync(path.join(dir, "token"), "agent-token\n");
  mesh = await startLoopbackMesh({
    net: NET,
    nodes: ["node-a"],
    env: { CA_ADDRESS: `127.0.0.1:${port}`, CA_ROOT_CA: path.join(dir, "root.pem"), AUTH_TOKEN: path.join(dir, "token") },
    waitFor: "answering",
  });
}, 60_000);
afterAll(async () => {
  await mesh?.stop();
  await ca?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("certificates from a remote CA that is down at start", () => {
  test("readiness names each certificate it waits for with the CA's error; the agent is ready once the CA answers", async () => {
    const r = await until("not ready, naming the CA error", () => ready(), (x) => x.status === 503 && /certificate spiffe:\/\/cluster\.local\/ns\/[^ ]+ \(CA_UNREACHABLE: /.test(x.body));
    expect(r.body).toContain(`127.0.0.1:${port}`);
    expect(mesh.agents[0]!.proc.exitCode).toBeNull();
    ca = await startFakeIstioCa(meshCa, serving, port);
    await until("ready once the CA answers", () => ready(), (x) => x.status === 200, 30_000);
    const d = JSON.parse((await httpGet(`${mesh.host(0)}:15000`, "/config_dump")).body) as { certificates: { status: string }[] };
    expect(d.certificates.length).toBeGreaterThan(0);
    expect(d.certificates.every((c) => c.status === "available")).toBe(true);
  }, 60_000);
});
