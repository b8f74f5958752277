import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, fakeKubeconfig, httpGet, selfSignedServingCert, startEcho, startFakeKubeApi, startLoopbackMesh, type FakeKubeApi, type LoopbackMesh } from "@zt/harness";
import { workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// Two agents (`ztunnel run`, DISCOVERY=kubernetes) follow a FAKE API server over HTTPS with a
// kubeconfig and token, as they would a cluster's; pods on loopback addresses carry real
// traffic (SOCKS5 on node-a, HBONE to node-b). The API server is down when they start.
const NET = 77;
const SLEEP = `127.${NET}.1.10`;
const ECHO = `127.${NET}.2.10`;
const NAMED = `127.${NET}.2.11`;
const PLAIN = `127.${NET}.2.12`;
const VIP = "10.96.77.20";
const CHURN = `127.${NET}.2.13`;
const CHURN_VIP = "10.96.77.21";
const TOKEN = "ztunnel-sa-token";
const files = workloadDir();
let api: FakeKubeApi | undefined;
let mesh: LoopbackMesh;
let echo: net.Server;
const serving = selfSignedServingCert();
let port = 0;

const pod = (name: string, ip: string, node: string, sa: string, labels: Record<string, string> = {}): Record<string, unknown> => ({
  metadata: { name, namespace: "default", labels },
  spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: "app" }] },
  status: { phase: "Running", podIP: ip, podIPs: [{ ip }], conditions: [{ type: "Ready", status: "True" }] },
});
const ready = (i: number): Promise<{ status: number; body: string }> => httpGet(`${mesh.host(i)}:15021`, "/healthz/ready");
const dump = async (i: number): Promise<any> => JSON.parse((await httpGet(`${mesh.host(i)}:15000`, "/config_dump")).body);

beforeAll(async () => {
  port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const kubeconfig = files.write("kubeconfig", fakeKubeconfig(`https://127.0.0.1:${port}`, TOKEN, serving.cert));
  echo = await startEcho(ECHO, 8080);
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], env: { DISCOVERY: "kubernetes", KUBECONFIG: kubeconfig }, waitFor: "answering" });
}, 60_000);
afterAll(async () => {
  await mesh?.stop();
  echo?.close();
  await api?.close();
});

describe("discovery from the Kubernetes API, through real agents", () => {
  test("an unreachable API server keeps the agents not ready, saying why; they sync once it answers", async () => {
    const r = await until("not ready, naming the API server", () => ready(0), (x) => x.status === 503 && /Kubernetes pods: first list not done \(KUBE_UNREACHABLE/.test(x.body));
    expect(r.body).toMatch(/the API server is unreachable/);
    expect(mesh.agents[0]!.logs.some((l) => String(l["msg"]).startsWith("workloads, services and policies come from the Kubernetes API at https://127.0.0.1:"))).toBe(true);
    api = await startFakeKubeApi({ port, serving, tokens: { [TOKEN]: { user: "system:serviceaccount:istio-system:ztunnel" } } });
    api.store.apply("Namespace", { metadata: { name: "default", labels: { "istio.io/dataplane-mode": "ambient" } } });
    api.store.apply("Pod", pod("sleep", SLEEP, "node-a", "sleep"));
    api.store.apply("Pod", pod("echo", ECHO, "node-b", "echo", { app: "echo" }));
    for (const i of [0, 1]) await until(`node ${i} ready`, () => ready(i), (x) => x.status === 200, 30_000);
    const d = await dump(0);
    expect(d.source).toMatchObject({ kind: "kubernetes", synced: true });
    expect(d.source.resources.map((s: { resource: string; state: string; synced: boolean }) => [s.resource, s.state, s.synced])).toEqual([
      ["namespaces", "watching", true],
      ["pods", "watching", true],
      ["services", "watching", true],
      ["endpointslices", "watching", true],
      ["authorizationpolicies", "watching", true],
    ]);
    expect(d.config.discovery).toBe("kubernetes");
  }, 60_000);

  test("a pod of the API carries traffic over HBONE with its identity on both sides", async () => {
    await until("echo's inbound listener", () => dump(1), (d) => d.workloads.some((w: { name: string }) => w.name === "echo"));
    const flow = await until("a flow", () => echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, ECHO, 8080), (f) => f.ok, 15_000);
    expect(flow).toMatchObject({ ok: true });
    const line = await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === flow.srcAddr), (l) => l !== undefined);
    expect(line).toMatchObject({ direction: "inbound", "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", "dst.workload": "echo", "dst.identity": "spiffe://cluster.local/ns/default/sa/echo" });
  }, 30_000);

  test("an AuthorizationPolicy object is enforced once the agents see it; deleting it lifts it", async () => {
    api!.store.apply("AuthorizationPolicy", { metadata: { name: "deny-8080", namespace: "default" }, spec: { action: "DENY", rules: [{ to: [{ operation: { ports: ["8080"] } }] }] } });
    await until("the policy on node-b", () => dump(1), (d) => d.policies.some((p: { name: string }) => p.name === "deny-8080"));
    expect((await echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, ECHO, 8080)).ok).toBe(false);
    api!.store.remove("AuthorizationPolicy", "default", "deny-8080");
    await until("the policy gone", () => dump(1), (d) => d.policies.length === 0);
    expect((await echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, ECHO, 8080)).ok).toBe(true);
  }, 30_000);

  test("a Service VIP reaches its EndpointSlice's pod on the named target port of that pod", async () => {
    const server = await startEcho(NAMED, 9090);
    try {
      api!.store.apply("Pod", { ...pod("named", NAMED, "node-b", "echo", { app: "named" }), spec: { nodeName: "node-b", serviceAccountName: "echo", containers: [{ name: "app", ports: [{ name: "tcp-echo", containerPort: 9090 }] }] } });
      api!.store.apply("Service", { metadata: { name: "named", namespace: "default" }, spec: { clusterIP: VIP, clusterIPs: [VIP], selector: { app: "named" }, ports: [{ name: "tcp", port: 80, targetPort: "tcp-echo", protocol: "TCP" }] } });
      api!.store.apply("EndpointSlice", {
        metadata: { name: "named-1", namespace: "default", labels: { "kubernetes.io/service-name": "named" } },
        addressType: "IPv4",
        endpoints: [{ addresses: [NAMED], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: "Pod", name: "named", namespace: "default" }, nodeName: "node-b" }],
        ports: [{ name: "tcp", port: 9090, protocol: "TCP" }],
      });
      await until("the service on node-a", () => dump(0), (d) => d.services.some((x: { name: string }) => x.name === "named") && d.workloads.some((w: { name: string }) => w.name === "named"));
      const flow = await until("a flow to the VIP", () => echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, VIP, 80), (f) => f.ok, 15_000);
      const line = await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === flow.srcAddr), (l) => l !== undefined);
      expect(line).toMatchObject({ "dst.addr": `${NAMED}:9090`, "dst.workload": "named", "src.identity": "spiffe://cluster.local/ns/default/sa/sleep" });
    } finally {
      server.close();
    }
  }, 30_000);

  test("a pod labelled istio.io/dataplane-mode=none that a service selects is plain TCP: reached without HBONE", async () => {
    const server = await startEcho(PLAIN, 8080);
    try {
      api!.store.apply("Pod", pod("plain", PLAIN, "node-b", "plain", { app: "plain", "istio.io/dataplane-mode": "none" }));
      api!.store.apply("Service", { metadata: { name: "plain", namespace: "default" }, spec: { clusterIP: "None", selector: { app: "plain" }, ports: [{ port: 8080, protocol: "TCP" }] } });
      await until("plain as TCP on node-a", () => dump(0), (d) => d.workloads.some((w: { name: string; protocol: string }) => w.name === "plain" && w.protocol === "TCP"));
      const flow = await echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, PLAIN, 8080);
      expect(flow.ok).toBe(true);
      const out = await until("node-a's line", () => mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === flow.srcAddr), (l) => l !== undefined);
      expect(out).toMatchObject({ direction: "outbound", "dst.workload": "plain" });
      expect(out!["dst.hbone_addr"]).toBeUndefined();
      expect(mesh.agents[1]!.accessLogs().some((l) => l["src.addr"] === flow.srcAddr)).toBe(false);
    } finally {
      server.close();
    }
  }, 30_000);

  test("an object that cannot be used is reported by kind, namespace and name, and the others still apply", async () => {
    api!.store.apply("AuthorizationPolicy", { metadata: { name: "audit-all", namespace: "default" }, spec: { action: "AUDIT", rules: [{}] } });
    api!.store.apply("AuthorizationPolicy", { metadata: { name: "deny-9", namespace: "default" }, spec: { action: "DENY", rules: [{ to: [{ operation: { ports: ["9"] } }] }] } });
    const d = await until("the policies on node-b", () => dump(1), (x) => x.policies.some((p: { name: string }) => p.name === "deny-9"));
    expect(d.policies.map((p: { name: string }) => p.name)).toEqual(["deny-9"]);
    expect(d.source.problems).toEqual([{ kind: "AuthorizationPolicy", namespace: "default", name: "audit-all", reason: "ztunnel does not support the AUDIT action; skipped" }]);
    expect(d.warnings).toContain("1 Kubernetes object(s) could not be used as written; see source.problems");
    await until("the warning logged", () => mesh.agents[1]!.logs.some((l) => l["msg"] === "AuthorizationPolicy default/audit-all: ztunnel does not support the AUDIT action; skipped"), (v) => v);
    api!.store.remove("AuthorizationPolicy", "default", "audit-all");
    api!.store.remove("AuthorizationPolicy", "default", "deny-9");
    await until("no problems", () => dump(1), (x) => x.source.problems.length === 0 && x.policies.length === 0);
  }, 30_000);

  test("a service's port changes, and its EndpointSlice goes ready -> terminating -> gone: the agents follow each step", async () => {
    const server = await startEcho(CHURN, 7070);
    const slice = (conditions: Record<string, boolean> | undefined): Record<string, unknown> => ({
      metadata: { name: "churn-1", namespace: "default", labels: { "kubernetes.io/service-name": "churn" } },
      addressType: "IPv4",
      endpoints: conditions ? [{ addresses: [CHURN], conditions, targetRef: { kind: "Pod", name: "churn", namespace: "default" }, nodeName: "node-b" }] : [],
      ports: [{ name: "tcp", port: 7070, protocol: "TCP" }],
    });
    const service = (port: number): Record<string, unknown> => ({ metadata: { name: "churn", namespace: "default" }, spec: { clusterIP: CHURN_VIP, clusterIPs: [CHURN_VIP], selector: { app: "churn" }, ports: [{ name: "tcp", port, targetPort: 7070, protocol: "TCP" }] } });
    const via = (port: number): Promise<boolean> => echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, CHURN_VIP, port).then((f) => f.ok);
    const endpointsOnA = async (): Promise<string[]> => (await dump(0)).workloads.filter((w: { services: Record<string, unknown> }) => Object.keys(w.services ?? {}).some((k) => k.startsWith("default/churn."))).map((w: { name: string }) => w.name);
    try {
      api!.store.apply("Pod", pod("churn", CHURN, "node-b", "echo", { app: "churn" }));
      api!.store.apply("Service", service(80));
      api!.store.apply("EndpointSlice", slice({ ready: true, serving: true, terminating: false }));
      await until("churn's endpoint on node-a", endpointsOnA, (e) => e.length === 1);
      expect(await until("port 80", () => via(80), (ok) => ok, 10_000)).toBe(true);
      api!.store.apply("Service", service(81));
      expect(await until("port 81", () => via(81), (ok) => ok, 10_000)).toBe(true);
      expect(await via(80)).toBe(false);
      // Terminating but still serving, and no ready endpoint: it still gets the traffic (kube-proxy's fallback).
      api!.store.apply("EndpointSlice", slice({ ready: false, serving: true, terminating: true }));
      await new Promise((r) => setTimeout(r, 300));
      expect(await endpointsOnA()).toEqual(["churn"]);
      expect(await via(81)).toBe(true);
      api!.store.apply("EndpointSlice", slice(undefined));
      await until("no endpoint", endpointsOnA, (e) => e.length === 0);
      expect(await via(81)).toBe(false);
    } finally {
      api!.store.remove("EndpointSlice", "default", "churn-1");
      api!.store.remove("Service", "default", "churn");
      api!.store.remove("Pod", "default", "churn");
      server.close();
    }
  }, 40_000);

  test("a deleted pod is forgotten by every agent", async () => {
    api!.store.remove("Pod", "default", "echo");
    for (const i of [0, 1]) await until(`node ${i} forgets echo`, () => dump(i), (d) => !d.workloads.some((w: { name: string }) => w.name === "echo"));
  }, 30_000);
});
