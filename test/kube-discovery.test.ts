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
const RENUMBERED = `127.${NET}.2.14`; // renum's IP before it changes…
const RENUMBERED_TO = `127.${NET}.2.15`; // …and after
const MOVER = `127.${NET}.1.11`; // on node-a, then on node-b
const REUSED = `127.${NET}.2.16`; // prior's, then successor's
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
/** Whether a TCP connect to ip:port is refused (nothing listens there). */
const refused = (ip: string, p: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect({ host: ip, port: p });
    s.once("connect", () => (s.destroy(), resolve(false)));
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });

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

  test("a pod's IP changes: the agents follow (the old IP is gone everywhere, node-b listens on the new one) and traffic to the new IP goes through", async () => {
    const servers = [await startEcho(RENUMBERED, 8080), await startEcho(RENUMBERED_TO, 8080)];
    const ipsOf = async (i: number): Promise<string[][]> => (await dump(i)).workloads.filter((w: { name: string }) => w.name === "renum").map((w: { workloadIps: string[] }) => w.workloadIps);
    try {
      api!.store.apply("Pod", pod("renum", RENUMBERED, "node-b", "renum"));
      for (const i of [0, 1]) await until(`renum on node ${i}`, () => ipsOf(i), (ips) => ips.length === 1 && ips[0]![0] === RENUMBERED);
      await until("node-b ready (renum bound)", () => ready(1), (r) => r.status === 200, 10_000);
      const before = await until("a flow to the old IP", () => echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, RENUMBERED, 8080), (f) => f.ok, 15_000);
      await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === before.srcAddr), (l) => l?.["dst.workload"] === "renum");
      api!.store.apply("Pod", pod("renum", RENUMBERED_TO, "node-b", "renum"));
      for (const i of [0, 1]) expect(await until(`the new IP only on node ${i}`, () => ipsOf(i), (ips) => ips.length === 1 && ips[0]!.length === 1 && ips[0]![0] === RENUMBERED_TO)).toEqual([[RENUMBERED_TO]]);
      for (const i of [0, 1]) expect((await dump(i)).workloads.some((w: { workloadIps: string[] }) => w.workloadIps.includes(RENUMBERED))).toBe(false);
      // node-b's inbound follows: nothing listens on the old IP's 15008 any more.
      expect(await until("15008 closed on the old IP", () => refused(RENUMBERED, 15008), (r) => r)).toBe(true);
      await until("node-b ready (the new IP bound)", () => ready(1), (r) => r.status === 200, 10_000);
      const flow = await echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, RENUMBERED_TO, 8080);
      expect(flow).toMatchObject({ ok: true });
      const line = await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === flow.srcAddr), (l) => l !== undefined);
      expect(line).toMatchObject({ direction: "inbound", "dst.addr": `${RENUMBERED_TO}:8080`, "dst.workload": "renum", "dst.identity": "spiffe://cluster.local/ns/default/sa/renum", "src.identity": "spiffe://cluster.local/ns/default/sa/sleep" });
      const out = await until("node-a's line", () => mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === flow.srcAddr), (l) => l !== undefined);
      expect(out).toMatchObject({ direction: "outbound", "dst.hbone_addr": `${RENUMBERED_TO}:15008` });
    } finally {
      api!.store.remove("Pod", "default", "renum");
      for (const s of servers) s.close();
    }
  }, 40_000);

  test("a pod's node changes (same name and IP, rescheduled): node-b serves it, node-a lets it go, and the next flow reaches it over HBONE", async () => {
    const server = await startEcho(MOVER, 8080);
    const moverOn = async (i: number): Promise<string | undefined> => (await dump(i)).workloads.find((w: { name: string }) => w.name === "mover")?.node;
    try {
      api!.store.apply("Pod", pod("mover", MOVER, "node-a", "mover"));
      for (const i of [0, 1]) await until(`mover on node-a, says node ${i}`, () => moverOn(i), (n) => n === "node-a");
      await until("node-a ready (mover bound)", () => ready(0), (r) => r.status === 200, 10_000);
      const local = await until("a flow on node-a", () => echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, MOVER, 8080), (f) => f.ok, 15_000);
      // On one node: node-a's own inbound takes it, on a connection node-a's pool keeps.
      await until("node-a's inbound line", () => mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === local.srcAddr && l["direction"] === "inbound"), (l) => l?.["dst.workload"] === "mover");
      api!.store.apply("Pod", pod("mover", MOVER, "node-b", "mover"));
      for (const i of [0, 1]) await until(`mover on node-b, says node ${i}`, () => moverOn(i), (n) => n === "node-b");
      // node-b can bind MOVER:15008 only once node-a let it go: both run on this host.
      const r = await until("node-b ready (mover bound)", () => ready(1), (x) => x.status === 200, 10_000);
      expect(r.body).not.toMatch(/not bound/);
      // node-a told its pool's connection to the address GOAWAY: left open, the pool would
      // reuse it (same identity, same address) and node-a's inbound refuse every stream.
      await until("node-a's inbound empty", () => dump(0), (d) => d.dataPath.hbone.inbound.connections === 0);
      expect(mesh.agents[0]!.logs.some((l) => l["msg"] === `${MOVER} is no longer a workload of node node-a: GOAWAY to the 1 HBONE connection(s) made to it; their clients reconnect`)).toBe(true);
      const flow = await echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, MOVER, 8080);
      expect(flow).toMatchObject({ ok: true });
      const line = await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === flow.srcAddr), (l) => l !== undefined);
      expect(line).toMatchObject({ direction: "inbound", "dst.addr": `${MOVER}:8080`, "dst.workload": "mover", "dst.identity": "spiffe://cluster.local/ns/default/sa/mover", "src.identity": "spiffe://cluster.local/ns/default/sa/sleep" });
      const onA = await until("node-a's line", () => mesh.agents[0]!.accessLogs().filter((l) => l["src.addr"] === flow.srcAddr), (l) => l.length > 0);
      expect(onA.map((l) => [l["direction"], l["dst.hbone_addr"]])).toEqual([["outbound", `${MOVER}:15008`]]);
    } finally {
      api!.store.remove("Pod", "default", "mover");
      server.close();
    }
  }, 40_000);

  test("an IP taken over by a newer pod of another identity: the conflict is reported, the old identity's connection is let go, and the next flow is the new identity's", async () => {
    const server = await startEcho(REUSED, 8080);
    const pool = async (): Promise<{ connections: number; keys: number }> => (await dump(0)).dataPath.hbone.pool;
    const owner = async (i: number): Promise<string[]> => (await dump(i)).workloads.filter((w: { workloadIps: string[] }) => w.workloadIps.includes(REUSED)).map((w: { serviceAccount: string }) => w.serviceAccount);
    // Names whose order would make `prior` win a tie: only the pods' ages decide.
    const prior = pod("prior", REUSED, "node-b", "old");
    const successor = pod("successor", REUSED, "node-b", "new");
    try {
      // Still Running while it terminates, as a pod does for its grace period.
      api!.store.apply("Pod", { ...prior, metadata: { name: "prior", namespace: "default", creationTimestamp: "2020-01-01T00:00:00Z", deletionTimestamp: "2030-01-01T00:00:00Z" } });
      for (const i of [0, 1]) await until(`prior owns the IP on node ${i}`, () => owner(i), (o) => o.join() === "old");
      await until("node-b ready (prior bound)", () => ready(1), (r) => r.status === 200, 10_000);
      const first = await until("a flow to prior", () => echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, REUSED, 8080), (f) => f.ok, 15_000);
      const firstLine = await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === first.srcAddr), (l) => l !== undefined);
      expect(firstLine).toMatchObject({ "dst.workload": "prior", "dst.identity": "spiffe://cluster.local/ns/default/sa/old" });
      // node-a's pool now holds a connection to sa/old at REUSED:15008.
      const withOld = await pool();

      api!.store.apply("Pod", { ...successor, metadata: { name: "successor", namespace: "default", creationTimestamp: "2020-01-02T00:00:00Z" } });
      for (const i of [0, 1]) await until(`successor owns the IP on node ${i}`, () => owner(i), (o) => o.join() === "new");
      const reason = `its IP ${REUSED} is already Kubernetes//Pod/default/successor's; left out`;
      for (const i of [0, 1]) expect((await dump(i)).source.problems).toContainEqual({ kind: "Pod", namespace: "default", name: "prior", reason });
      for (const i of [0, 1]) await until(`node ${i} warns`, () => mesh.agents[i]!.logs.find((l) => l["msg"] === `Pod default/prior: ${reason}`), (l) => l?.["level"] === "warn");
      // node-b told the connection that was shown sa/old's certificate GOAWAY; node-a's pool let it go.
      expect(await until("node-a's pool without it", pool, (p) => p.connections === withOld.connections - 1)).toEqual({ ...withOld, connections: withOld.connections - 1, keys: withOld.keys - 1 });
      expect(mesh.agents[1]!.logs.some((l) => l["msg"] === `${REUSED} is now default/successor's (spiffe://cluster.local/ns/default/sa/new), not spiffe://cluster.local/ns/default/sa/old's: GOAWAY to the 1 HBONE connection(s) made to it; their clients reconnect`)).toBe(true);

      const next = await echoFlow({ host: mesh.host(0), port: 15080 }, SLEEP, REUSED, 8080);
      expect(next).toMatchObject({ ok: true });
      const out = await until("node-a's line", () => mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === next.srcAddr), (l) => l !== undefined);
      const inb = await until("node-b's line", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === next.srcAddr), (l) => l !== undefined);
      for (const l of [out, inb]) expect(l).toMatchObject({ "dst.workload": "successor", "dst.identity": "spiffe://cluster.local/ns/default/sa/new" });
      // Those lines name the workload each agent's store holds. That the flow went on a new
      // connection, whose handshake node-a accepts only from sa/new's certificate, is node-a's
      // pool: a new key (the pool keys by destination identity) and a new connection.
      expect(await pool()).toEqual(withOld);
    } finally {
      api!.store.remove("Pod", "default", "successor");
      api!.store.remove("Pod", "default", "prior");
      server.close();
    }
    for (const i of [0, 1]) await until(`node ${i}: no problems left`, () => dump(i), (d) => d.source.problems.length === 0);
  }, 40_000);

  test("a deleted pod is forgotten by every agent", async () => {
    api!.store.remove("Pod", "default", "echo");
    for (const i of [0, 1]) await until(`node ${i} forgets echo`, () => dump(i), (d) => !d.workloads.some((w: { name: string }) => w.name === "echo"));
  }, 30_000);
});
