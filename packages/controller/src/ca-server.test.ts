import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ZtError } from "@zt/errors";
import { fakeKubeconfig, selfSignedServingCert, startFakeKubeApi, type FakeKubeApi } from "@zt/harness";
import { createCertManager, createKeyAndCsr, loadOrCreateCa, type BuiltinCa } from "@zt/identity";
import { CA_SERVICE, createIstioCaClient, type CaRequest, type CaResponse } from "@zt/istio";
import { KubeConfig, startKubeDiscovery, type KubeDiscovery } from "@zt/kube";
import { createCaServer, type CaServer } from "./ca-server.js";
import { createPodIndex } from "./pod-index.js";
import { createTokenReviewer } from "./token-review.js";

// The CA server on real gRPC over TLS (127.0.0.1), its callers authenticated by TokenReview
// against the FAKE Kubernetes API server, which also serves the pods (read by @zt/kube's
// discovery); node agents are the real Istio CA client (createIstioCaClient).
const TD = "cluster.local";
const DAY = 24 * 3600_000;
const CONTROLLER_TOKEN = "controller-token";
const READER_TOKEN = "reader-token";
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

let dir: string;
let api: FakeKubeApi;
let discovery: KubeDiscovery;
let ca: BuiltinCa;
let caServer: CaServer;
let server: grpc.Server;
let address: string;
let rootPath: string;
const logs: Record<string, unknown>[] = [];
const serving = selfSignedServingCert(["127.0.0.1"]);
let agentToken: string;
const uids: Record<string, string> = {};

const pod = (namespace: string, name: string, node: string, sa: string, phase = "Running"): Record<string, unknown> => ({
  metadata: { name, namespace },
  spec: { nodeName: node, serviceAccountName: sa },
  status: { phase, podIP: "10.244.0.1" },
});

function kubeconfig(token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(fakeKubeconfig(api.url, token, api.ca));
  return kc;
}

async function tokenFile(name: string, token: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, token);
  return p;
}

/** A node agent's request for `identity` with `token`, through the Istio CA client. */
async function agentAsks(token: string, identity: string, ttlMs = 3_600_000) {
  const client = createIstioCaClient({ address, rootCaPath: rootPath, tokenPath: await tokenFile(`t-${Math.random()}`, token), clusterId: "Kubernetes" });
  try {
    const { csrPem } = await createKeyAndCsr(identity);
    return await client.sign(csrPem, identity, ttlMs);
  } finally {
    client.close();
  }
}

/** The refusal: the client's error, the gRPC status under it and the server's log line. */
async function refused(p: Promise<unknown>): Promise<{ err: ZtError; status: number; log: Record<string, unknown> | undefined }> {
  const before = logs.length;
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ZtError);
  const z = err as ZtError;
  return { err: z, status: (z.cause as grpc.ServiceError).code, log: logs.slice(before).find((l) => l["msg"] === "certificate request refused") };
}

/** A raw CreateCertificate call (no impersonation unless `metadata` says so). */
function rawCall(token: string, req: CaRequest): Promise<CaResponse> {
  const client = new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(serving.cert)));
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  const m = CA_SERVICE.CreateCertificate;
  return new Promise<CaResponse>((resolve, reject) => {
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, md, { deadline: Date.now() + 5000 }, (err, v) => (err ? reject(err) : resolve(v!)));
  }).finally(() => client.close());
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zt-ca-server-"));
  api = await startFakeKubeApi({
    tokens: {
      [CONTROLLER_TOKEN]: { user: "system:serviceaccount:istio-system:zt-controller", allow: (verb, resource) => (verb === "create" ? resource === "tokenreviews" : ["get", "list", "watch"].includes(verb)) },
      [READER_TOKEN]: { user: "system:serviceaccount:default:reader" },
    },
  });
  for (const p of [
    pod("istio-system", "ztunnel-a", "node-a", "ztunnel"),
    pod("default", "sleep-1", "node-a", "sleep"),
    pod("default", "httpbin-1", "node-b", "httpbin"),
    pod("default", "crashed-1", "node-a", "crashed", "Failed"),
  ]) {
    const o = api.store.apply("Pod", p);
    uids[o.metadata.name] = o.metadata.uid!;
  }
  const kc = kubeconfig(CONTROLLER_TOKEN);
  discovery = startKubeDiscovery({ kc, names: { clusterId: "Kubernetes", trustDomain: TD, domainSuffix: "cluster.local", rootNamespace: "istio-system" }, onUpdate: () => {}, batchMs: 10 });
  for (let i = 0; i < 200 && !discovery.synced(); i++) await new Promise((r) => setTimeout(r, 25));
  expect(discovery.synced()).toBe(true);
  ca = await loadOrCreateCa({ dir: join(dir, "ca"), trustDomain: TD });
  const sink = new Writable({ write: (chunk, _enc, done) => (logs.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) });
  caServer = createCaServer({ signer: ca, trustDomain: TD, tokens: createTokenReviewer(kc), pods: createPodIndex(() => discovery.objects("pods")), maxTtlMs: DAY, logger: pino({ level: "info" }, sink) });
  server = new grpc.Server();
  server.addService(CA_SERVICE, caServer.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.cert), private_key: Buffer.from(serving.key) }]), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
  rootPath = join(dir, "root-cert.pem");
  await writeFile(rootPath, ca.roots().join("") + serving.cert);
  agentToken = api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", pod: { name: "ztunnel-a", uid: uids["ztunnel-a"]! } });
});
afterAll(async () => {
  server?.forceShutdown();
  discovery?.close();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("CA server (TokenReview and pods from the FAKE API server, gRPC+TLS on 127.0.0.1)", () => {
  test("end to end: the node agent's cert-manager gets a certificate for a pod on its node; the lifetime is clamped to maxTtlMs; root last on the wire", async () => {
    const client = createIstioCaClient({ address, rootCaPath: rootPath, tokenPath: await tokenFile("agent-token", agentToken), clusterId: "Kubernetes" });
    const certs = createCertManager({ source: client, ttlMs: 2 * DAY });
    try {
      const cert = await certs.fetch(id("default", "sleep"));
      expect(cert.identity).toBe(id("default", "sleep"));
      expect(new X509Certificate(cert.certChain[0]!).subjectAltName).toBe(`URI:${id("default", "sleep")}`);
      expect(cert.notAfter.getTime()).toBeLessThanOrEqual(Date.now() + DAY + 2000);
      expect(cert.notAfter.getTime()).toBeGreaterThan(Date.now() + DAY - 60_000);
      expect(certs.dump()[0]).toMatchObject({ state: "Available" });
    } finally {
      certs.close();
      client.close();
    }
    const { csrPem } = await createKeyAndCsr(id("default", "sleep"));
    const wire = await rawCall(agentToken, { csr: csrPem, validity_duration: 3600, metadata: { ImpersonatedIdentity: id("default", "sleep") } });
    expect(wire.cert_chain).toHaveLength(2);
    expect(new X509Certificate(wire.cert_chain[1]!).fingerprint256).toBe(new X509Certificate(ca.roots()[0]!).fingerprint256);
    expect(caServer.stats().issued).toBeGreaterThanOrEqual(2);
  });

  test("refused: an identity with no pod on the caller's node (PERMISSION_DENIED, opaque to the client, the reason logged as CA_CALLER_FORBIDDEN)", async () => {
    const r = await refused(agentAsks(agentToken, id("default", "httpbin")));
    expect(r.err.code).toBe("CA_REQUEST_REFUSED");
    expect(r.status).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.err.message).not.toContain("node-a");
    expect(r.log).toMatchObject({ code: "CA_CALLER_FORBIDDEN", reason: expect.stringContaining("node-a") });
  });

  test("refused: a caller with a token that is not a node agent's asks for another identity", async () => {
    const sleepToken = api.serviceAccountTokens.mint({ namespace: "default", serviceAccount: "sleep", pod: { name: "sleep-1", uid: uids["sleep-1"]! } });
    const r = await refused(agentAsks(sleepToken, id("default", "sleep")));
    expect(r.status).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.log).toMatchObject({ code: "CA_CALLER_FORBIDDEN", reason: expect.stringContaining("not a trusted node account") });
  });

  test("refused: a token minted for another audience (UNAUTHENTICATED)", async () => {
    const token = api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", audiences: ["https://kubernetes.default.svc.cluster.local"], pod: { name: "ztunnel-a", uid: uids["ztunnel-a"]! } });
    const r = await refused(agentAsks(token, id("default", "sleep")));
    expect(r.err.code).toBe("CA_REQUEST_REFUSED");
    expect(r.status).toBe(grpc.status.UNAUTHENTICATED);
    expect(r.log).toMatchObject({ code: "CA_CALLER_UNAUTHENTICATED", reason: expect.stringContaining("audiences") });
  });

  test("refused: an expired token (UNAUTHENTICATED)", async () => {
    const token = api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", expiresAt: new Date(Date.now() - 1000), pod: { name: "ztunnel-a", uid: uids["ztunnel-a"]! } });
    const r = await refused(agentAsks(token, id("default", "sleep")));
    expect(r.status).toBe(grpc.status.UNAUTHENTICATED);
    expect(r.log).toMatchObject({ code: "CA_CALLER_UNAUTHENTICATED", reason: expect.stringContaining("expired") });
  });

  test("refused: the only pod with that identity on the node is Failed", async () => {
    const r = await refused(agentAsks(agentToken, id("default", "crashed")));
    expect(r.status).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.log).toMatchObject({ code: "CA_CALLER_FORBIDDEN", reason: expect.stringContaining("default/crashed") });
  });

  test("refused: a token bound to a pod uid that is not the pod's (recreated)", async () => {
    const token = api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", pod: { name: "ztunnel-a", uid: "00000000-0000-0000-0000-000000000000" } });
    const r = await refused(agentAsks(token, id("default", "sleep")));
    expect(r.status).toBe(grpc.status.UNAUTHENTICATED);
  });

  test("a pod scheduled after start is seen (the by-node index follows discovery's changes)", async () => {
    await agentAsks(agentToken, id("default", "sleep")); // the index is built now
    const r = await refused(agentAsks(agentToken, id("default", "late")));
    expect(r.status).toBe(grpc.status.PERMISSION_DENIED);
    api.store.apply("Pod", pod("default", "late-1", "node-a", "late"));
    for (let i = 0; i < 100 && !discovery.objects("pods").items.has("default/late-1"); i++) await new Promise((res) => setTimeout(res, 25));
    const signed = await agentAsks(agentToken, id("default", "late"));
    expect(new X509Certificate(signed.certChain[0]!).subjectAltName).toBe(`URI:${id("default", "late")}`);
  });

  test("refused: the caller's pod, as the pod lookup sees it, has another uid than its token's (a FAKE pod lookup lagging behind a recreation)", async () => {
    const kc = kubeconfig(CONTROLLER_TOKEN);
    const FAKE_PODS = {
      pod: (namespace: string, name: string) => (namespace === "istio-system" && name === "ztunnel-a" ? { namespace, name, uid: "older-uid", nodeName: "node-a", serviceAccount: "ztunnel", phase: "Running" } : undefined),
      podsOnNode: () => [{ namespace: "default", name: "sleep-1", uid: "u", nodeName: "node-a", serviceAccount: "sleep", phase: "Running" }],
    };
    const before = logs.length;
    const other = createCaServer({ signer: ca, trustDomain: TD, tokens: createTokenReviewer(kc), pods: FAKE_PODS, maxTtlMs: DAY, logger: pino({ level: "info" }, new Writable({ write: (c, _e, done) => (logs.push(JSON.parse(String(c)) as Record<string, unknown>), done()) })) });
    const s2 = new grpc.Server();
    s2.addService(CA_SERVICE, other.implementation);
    const port = await new Promise<number>((resolve, reject) =>
      s2.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.cert), private_key: Buffer.from(serving.key) }]), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const saved = address;
    address = `127.0.0.1:${port}`;
    try {
      const r = await refused(agentAsks(agentToken, id("default", "sleep")));
      expect(r.status).toBe(grpc.status.PERMISSION_DENIED);
      expect(logs.slice(before).find((l) => l["msg"] === "certificate request refused")).toMatchObject({ code: "CA_CALLER_FORBIDDEN", reason: expect.stringContaining("now has uid older-uid") });
      expect(other.stats()).toMatchObject({ issued: 0, forbidden: 1 });
    } finally {
      address = saved;
      s2.forceShutdown();
    }
  });

  test("without impersonation the caller gets its own identity; a CSR for another one is INVALID_ARGUMENT; no token is UNAUTHENTICATED", async () => {
    const sleepToken = api.serviceAccountTokens.mint({ namespace: "default", serviceAccount: "sleep" });
    const own = await createKeyAndCsr(id("default", "sleep"));
    const res = await rawCall(sleepToken, { csr: own.csrPem, validity_duration: 600, metadata: {} });
    expect(new X509Certificate(res.cert_chain[0]!).subjectAltName).toBe(`URI:${id("default", "sleep")}`);
    const other = await createKeyAndCsr(id("default", "httpbin"));
    const err = (await rawCall(sleepToken, { csr: other.csrPem, validity_duration: 600, metadata: {} }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const none = (await rawCall("", { csr: own.csrPem, validity_duration: 600, metadata: {} }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(none.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  test("the TokenReview caller needs create on tokenreviews: a read-only token gets TOKEN_REVIEW_FAILED (403)", async () => {
    const reviewer = createTokenReviewer(kubeconfig(READER_TOKEN));
    const err = await reviewer.review(agentToken).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ZtError);
    expect((err as ZtError).code).toBe("TOKEN_REVIEW_FAILED");
    const caller = await createTokenReviewer(kubeconfig(CONTROLLER_TOKEN)).review(agentToken);
    expect(caller).toEqual({ namespace: "istio-system", serviceAccount: "ztunnel", podName: "ztunnel-a", podUid: uids["ztunnel-a"] });
  });
});
