import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fakeKubeconfig, startFakeKubeApi, type FakeKubeApi } from "@zt/harness";
import { createKeyAndCsr } from "@zt/identity";
import * as grpc from "@grpc/grpc-js";
import { ADDRESS_TYPE, createIstioCaClient, decodeAddress, decodeDeltaResponse, DELTA_XDS_METHOD, encodeDeltaRequest, startXdsClient, type DeltaRequest, type DeltaResponse, type XdsTypeHandler } from "@zt/istio";
import { loadControllerConfig } from "./config.js";
import { startController, type Controller } from "./controller.js";
import { ROOT_CONFIGMAP } from "./root-publisher.js";

// The real controller (startController) against the FAKE Kubernetes API server over HTTPS
// on 127.0.0.1 (KUBECONFIG), its gRPC and monitoring ports on 127.0.0.1:0; the callers are
// the agent's own clients (createIstioCaClient, startXdsClient) and plain HTTP/TLS.
const TD = "cluster.local";
const NAME = "zt-controller.istio-system.svc";
const CONTROLLER_TOKEN = "controller-token";
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

let dir: string;
let api: FakeKubeApi;
let controller: Controller;
let rootPath: string;
let agentToken: string;
let savedKubeconfig: string | undefined;
/** The controller may write the root ConfigMap (its Role); refused at first. */
let mayWrite = false;
/** Pods are answered 500 at first: the controller is not synced. */
let podsBroken = true;

const pod = (namespace: string, name: string, node: string, sa: string, ip: string): Record<string, unknown> => ({
  metadata: { name, namespace, labels: { "istio.io/dataplane-mode": "ambient" } },
  spec: { nodeName: node, serviceAccountName: sa },
  status: { phase: "Running", podIP: ip },
});

function get(path: string, method = "GET"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`http://${controller.monitoringAddress}${path}`, { method }, (res) => {
      let body = "";
      res.on("data", (c) => (body += String(c)));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
const status = async (): Promise<Record<string, any>> => JSON.parse((await get("/debug/status")).body) as Record<string, any>;

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** node-a's agent's xDS client of `address` (its token written to a file of `name`), collecting workload names (to resource names). */
async function agentXds(address: string, name: string, onSynced?: () => void): Promise<{ client: ReturnType<typeof startXdsClient>; workloads: Map<string, string> }> {
  const tokenFile = join(dir, name);
  await writeFile(tokenFile, agentToken);
  const workloads = new Map<string, string>();
  const handler: XdsTypeHandler<unknown> = {
    decode: (_name, body) => decodeAddress(body),
    apply: (upserts) => {
      for (const [resource, a] of upserts) {
        const w = (a as { workload?: { name?: string } }).workload;
        if (w?.name) workloads.set(w.name, resource);
      }
    },
  };
  const client = startXdsClient({
    address,
    rootCaFile: rootPath,
    altHostname: NAME,
    tokenFile,
    node: { ip: "10.244.0.2", podName: "ztunnel-a", podNamespace: "istio-system", nodeName: "node-a", clusterId: "Kubernetes" },
    types: new Map([[ADDRESS_TYPE, handler]]),
    logger: pino({ level: "silent" }),
    ...(onSynced ? { onSynced } : {}),
  });
  return { client, workloads };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zt-controller-"));
  api = await startFakeKubeApi({
    tokens: {
      [CONTROLLER_TOKEN]: {
        user: "system:serviceaccount:istio-system:zt-controller",
        allow: (verb, resource, ns) => {
          if (verb === "create" && resource === "tokenreviews") return true;
          if (resource === "configmaps" && (verb === "create" || verb === "update")) return mayWrite && ns === "istio-system";
          return ["get", "list", "watch"].includes(verb);
        },
      },
    },
  });
  api.override = (path) => (podsBroken && path.startsWith("/api/v1/pods") ? { status: 500, body: JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", message: "etcd is down", reason: "InternalError", code: 500 }) } : undefined);
  const uid = api.store.apply("Pod", pod("istio-system", "ztunnel-a", "node-a", "ztunnel", "10.244.0.2")).metadata.uid!;
  api.store.apply("Pod", pod("default", "sleep-1", "node-a", "sleep", "10.244.0.10"));
  api.store.apply("Pod", pod("default", "httpbin-1", "node-b", "httpbin", "10.244.1.10"));
  agentToken = api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", pod: { name: "ztunnel-a", uid } });
  const kubeconfig = join(dir, "kubeconfig");
  await writeFile(kubeconfig, fakeKubeconfig(api.url, CONTROLLER_TOKEN, api.ca));
  savedKubeconfig = process.env["KUBECONFIG"];
  process.env["KUBECONFIG"] = kubeconfig;
  const config = loadControllerConfig({ CA_CERTS_DIR: join(dir, "cacerts"), GRPC_ADDR: "127.0.0.1:0", MONITORING_ADDR: "127.0.0.1:0", LOG_LEVEL: "silent" });
  controller = await startController(config, pino({ level: "silent" }), { rootRetryBaseMs: 20 });
  rootPath = join(dir, "root-cert.pem");
  await writeFile(rootPath, controller.rootPem);
});
afterAll(async () => {
  await controller?.close();
  await api?.close();
  if (savedKubeconfig === undefined) delete process.env["KUBECONFIG"];
  else process.env["KUBECONFIG"] = savedKubeconfig;
  await rm(dir, { recursive: true, force: true });
});

describe("zt-controller (startController against the FAKE API server, ports on 127.0.0.1:0)", () => {
  test("reports its bound ports, not 0", () => {
    expect(controller.grpcAddress).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(controller.monitoringAddress).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(controller.grpcAddress).not.toBe(controller.monitoringAddress);
  });

  test("not ready (503 naming what it waits for: the pods' first list, the refused root ConfigMap, retried and in /debug/status) until the API answers; then 200 and the ConfigMap holds the CA's root", async () => {
    const waiting = await get("/ready");
    expect(waiting.status).toBe(503);
    expect(waiting.body).toContain("Kubernetes pods: first list not done");
    expect(waiting.body).toContain(`ConfigMap istio-system/${ROOT_CONFIGMAP} not published yet`);
    await until("a retried publish", async () => (await status())["root"].attempts >= 2);
    const refused = (await status())["root"];
    expect(refused).toMatchObject({ published: false, lastError: expect.stringContaining("HTTP 403") });
    expect(refused.lastError).toContain('cannot update resource "configmaps"');

    podsBroken = false;
    await until("pods synced", async () => !(await get("/ready")).body.includes("pods"));
    expect((await get("/ready")).status).toBe(503); // still the ConfigMap
    mayWrite = true;
    await until("ready", async () => (await get("/ready")).status === 200);
    expect((await get("/ready")).body).toBe("ready\n");
    expect((await status())["root"]).toMatchObject({ published: true, lastError: null });
    const cm = api.store.get(api.store.resource("ConfigMap"), "istio-system", ROOT_CONFIGMAP);
    expect(cm?.["data"]).toEqual({ "root-cert.pem": controller.rootPem });
    expect(controller.pending()).toEqual([]);
  });

  test("/debug/status, /metrics (controller_xds_* and process metrics), 405 for POST", async () => {
    const s = await status();
    expect(Object.keys(s)).toEqual(expect.arrayContaining(["version", "source", "ca", "xds", "root", "servingCert"]));
    expect(s["servingCert"]).toMatchObject({ names: expect.arrayContaining([NAME]), expires: expect.any(String), serial: expect.any(String) });
    const metrics = await get("/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^controller_xds_\w+/m);
    expect(metrics.body).toMatch(/^process_cpu_user_seconds_total/m);
    expect(metrics.body).toMatch(/^nodejs_heap_size_used_bytes/m);
    const post = await get("/ready", "POST");
    expect(post.status).toBe(405);
  });

  test("the gRPC port's certificate verifies against the mesh root for zt-controller.istio-system.svc, and fails for another name", async () => {
    const [host, port] = [controller.grpcAddress.split(":")[0]!, Number(controller.grpcAddress.split(":")[1])];
    const connect = (servername: string) =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const socket = tls.connect({ host, port, servername, ca: controller.rootPem, ALPNProtocols: ["h2"] }, () => resolve(socket));
        socket.once("error", reject);
      });
    const ok = await connect(NAME);
    expect(ok.authorized).toBe(true);
    expect(ok.alpnProtocol).toBe("h2");
    expect(ok.getPeerCertificate().subjectaltname).toContain(`DNS:${NAME}`);
    ok.destroy();
    await expect(connect("zt-controller.other.svc")).rejects.toThrow(/altnames/);
  });

  test("the agent's CA client (a token of its ztunnel pod on node-a) gets a certificate for a pod on node-a and is refused for a pod on node-b", async () => {
    const tokenPath = join(dir, "agent-token");
    await writeFile(tokenPath, agentToken);
    const client = createIstioCaClient({ address: controller.grpcAddress, rootCaPath: rootPath, altHostname: NAME, tokenPath, clusterId: "Kubernetes" });
    try {
      const mine = await createKeyAndCsr(id("default", "sleep"));
      const signed = await client.sign(mine.csrPem, id("default", "sleep"), 3_600_000);
      expect(new X509Certificate(signed.certChain[0]!).subjectAltName).toBe(`URI:${id("default", "sleep")}`);
      expect(new X509Certificate(signed.certChain[0]!).verify(new X509Certificate(controller.rootPem).publicKey)).toBe(true);
      expect(signed.roots.join("")).toBe(controller.rootPem);
      const other = await createKeyAndCsr(id("default", "httpbin"));
      await expect(client.sign(other.csrPem, id("default", "httpbin"), 3_600_000)).rejects.toMatchObject({ code: "CA_REQUEST_REFUSED" });
    } finally {
      client.close();
    }
    expect((await status())["ca"]).toMatchObject({ issued: expect.any(Number) });
  });

  test("the agent's xDS client receives the pods as Address resources", async () => {
    let synced = false;
    const { client, workloads } = await agentXds(controller.grpcAddress, "agent-token-xds", () => (synced = true));
    try {
      await until("the xDS client synced", () => synced);
      expect([...workloads.keys()].sort()).toEqual(["httpbin-1", "sleep-1", "ztunnel-a"]);
      expect(client.pending()).toEqual([]);
      const xds = (await status())["xds"];
      expect(xds.clients).toHaveLength(1);
    } finally {
      client.close();
    }
  });

  test("a connection past MAX_SERVER_CONNECTION_AGE is told GOAWAY and closed after its grace; the agent's xDS client reconnects and goes on receiving changes", async () => {
    const aged = await startController(loadControllerConfig({ CA_CERTS_DIR: join(dir, "cacerts"), GRPC_ADDR: "127.0.0.1:0", MONITORING_ADDR: "127.0.0.1:0", MAX_SERVER_CONNECTION_AGE: "1s", LOG_LEVEL: "silent" }), pino({ level: "silent" }), { connectionAgeGraceMs: 300 });
    const { client, workloads } = await agentXds(aged.grpcAddress, "agent-token-aged");
    try {
      await until("the first sync", () => workloads.has("sleep-1"));
      // 1 s ± 10%, then 300 ms of grace: the stream ends, the client connects again.
      await until("a reconnect", () => client.status().reconnects >= 1 && client.status().state === "connected");
      api.store.apply("Pod", pod("default", "late-1", "node-a", "sleep", "10.244.0.11"));
      await until("a change after the reconnect", () => workloads.has("late-1"));
    } finally {
      client.close();
      api.store.remove("Pod", "default", "late-1");
      await aged.close();
    }
  });

  test("xDS is read only by a trusted node account as its own pod: other callers are refused with opaque statuses", async () => {
    const [host, port] = controller.grpcAddress.split(":") as [string, string];
    /** One raw delta xDS stream: its status, or "open" while it is still served after 5 s. */
    const stream = async (authorization: string | undefined, nodeId: string): Promise<grpc.StatusObject | "open"> => {
      const client = new grpc.Client(`${host}:${port}`, grpc.credentials.createSsl(Buffer.from(controller.rootPem)), { "grpc.ssl_target_name_override": NAME, "grpc.use_local_subchannel_pool": 1, "grpc.max_receive_message_length": -1 });
      const md = new grpc.Metadata();
      if (authorization !== undefined) md.set("authorization", authorization);
      const call = client.makeBidiStreamRequest<DeltaRequest, DeltaResponse>(DELTA_XDS_METHOD, encodeDeltaRequest, decodeDeltaResponse, md);
      call.on("error", () => {});
      call.on("data", () => {});
      try {
        const ended = new Promise<grpc.StatusObject>((r) => call.on("status", r));
        call.write({ type_url: ADDRESS_TYPE, node: { id: nodeId, metadata: {} }, resource_names_subscribe: [] });
        return await Promise.race([ended, new Promise<"open">((r) => setTimeout(() => r("open"), 5_000))]);
      } finally {
        call.cancel();
        client.close();
      }
    };
    const nodeId = (pod: string): string => `ztunnel~10.244.0.2~${pod}.istio-system~istio-system.svc.cluster.local`;
    const sleepUid = (api.store.get(api.store.resource("Pod"), "default", "sleep-1") as { metadata: { uid: string } }).metadata.uid;
    const sleepToken = api.serviceAccountTokens.mint({ namespace: "default", serviceAccount: "sleep", pod: { name: "sleep-1", uid: sleepUid } });
    expect(await stream(undefined, nodeId("ztunnel-a"))).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect(await stream("Bearer ", nodeId("ztunnel-a"))).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect(await stream(`Bearer ${sleepToken}`, "ztunnel~10.244.0.10~sleep-1.default~default.svc.cluster.local")).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.not.stringContaining("sleep") });
    expect(await stream(`Bearer ${agentToken}`, nodeId("ztunnel-b"))).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    // TokenReview failing (the API server answers 503): UNAVAILABLE, the agent retries, not XDS_REFUSED.
    // A token not reviewed yet: the controller keeps answers it has had for a few seconds.
    const uid = (api.store.get(api.store.resource("Pod"), "istio-system", "ztunnel-a") as { metadata: { uid: string } }).metadata.uid;
    const fresh = api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", pod: { name: "ztunnel-a", uid } });
    const saved = api.override;
    api.override = (path) => (path.startsWith("/apis/authentication.k8s.io/v1/tokenreviews") ? { status: 503, body: JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", message: "unavailable", code: 503 }) } : saved?.(path));
    try {
      expect(await stream(`Bearer ${fresh}`, nodeId("ztunnel-a"))).toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      api.override = saved;
    }
    // The agent as its own pod is served (still open when left).
    expect(await stream(`bearer ${agentToken}`, nodeId("ztunnel-a"))).toBe("open");
  });

  test("a start that fails (MONITORING_ADDR in use) rejects naming it and leaves nothing running: no watches on the API server", async () => {
    const taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
    const port = (taken.address() as { port: number }).port;
    const before = api.watches();
    try {
      const config = loadControllerConfig({ CA_CERTS_DIR: join(dir, "cacerts"), GRPC_ADDR: "127.0.0.1:0", MONITORING_ADDR: `127.0.0.1:${port}`, LOG_LEVEL: "silent" });
      await expect(startController(config, pino({ level: "silent" }))).rejects.toThrow(`cannot listen on MONITORING_ADDR 127.0.0.1:${port}`);
      // A discovery left running would list and then watch its resources within moments; none does.
      for (let i = 0; i < 50; i++) {
        await new Promise((r) => setTimeout(r, 20));
        expect(api.watches()).toBe(before);
      }
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});
