import { describe, expect, test } from "vitest";
import { createMeshStore, pickEndpoint, type MeshDelta, type Workload } from "@zt/state";
import type { ClusterNames, EndpointSlice, KubeObjects, KubeService, Namespace, Pod } from "./objects.js";
import { createTranslator, translate } from "./translate.js";

// Kubernetes objects as the API serves them, in; the mesh model the local file would give, out.
const NAMES: ClusterNames = { clusterId: "Kubernetes", trustDomain: "cluster.local", domainSuffix: "cluster.local", rootNamespace: "istio-system" };

const ns = (name: string, labels: Record<string, string> = {}): Namespace => ({ metadata: { name, labels } });
interface PodOpts {
  ns?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ips?: string[];
  node?: string;
  phase?: string;
  ready?: boolean;
  sa?: string;
  hostNetwork?: boolean;
  owner?: { kind: string; name: string };
  ports?: { name: string; containerPort: number }[];
  containers?: string[];
  created?: string;
}
function pod(name: string, o: PodOpts = {}): Pod {
  return {
    metadata: {
      name,
      namespace: o.ns ?? "default",
      labels: o.labels ?? {},
      annotations: o.annotations ?? {},
      ...(o.owner ? { ownerReferences: [{ ...o.owner, controller: true }] } : {}),
      ...(o.created ? { creationTimestamp: o.created } : {}),
    },
    spec: {
      nodeName: o.node ?? "node-a",
      ...(o.sa ? { serviceAccountName: o.sa } : {}),
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      containers: (o.containers ?? ["app"]).map((c, i) => ({ name: c, ...(i === 0 && o.ports ? { ports: o.ports } : {}) })),
    },
    status: {
      phase: o.phase ?? "Running",
      podIPs: (o.ips ?? ["10.244.1.5"]).map((ip) => ({ ip })),
      conditions: [{ type: "Ready", status: o.ready === false ? "False" : "True" }],
    },
  };
}
function svc(name: string, ports: { name?: string; port: number; targetPort?: number | string }[], o: { ns?: string; ips?: string[]; selector?: Record<string, string>; type?: string } = {}): KubeService {
  return { metadata: { name, namespace: o.ns ?? "default" }, spec: { ...(o.type ? { type: o.type } : {}), clusterIPs: o.ips ?? ["10.96.0.20"], selector: o.selector ?? { app: name }, ports: ports.map((p) => ({ protocol: "TCP", ...p })) } };
}
type Ep = { ip: string; pod?: string; ready?: boolean; serving?: boolean; terminating?: boolean; node?: string; kind?: string };
function slice(name: string, service: string, eps: Ep[], ports: { name?: string; port: number }[] = [], namespace = "default"): EndpointSlice {
  return {
    metadata: { name, namespace, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.pod ? { targetRef: { kind: e.kind ?? "Pod", name: e.pod, namespace } } : {}),
      ...(e.node ? { nodeName: e.node } : {}),
    })),
    ports: ports.map((p) => ({ protocol: "TCP", ...p })),
  };
}
function objects(o: { namespaces?: Namespace[]; pods?: Pod[]; services?: KubeService[]; slices?: EndpointSlice[] }): KubeObjects {
  const key = (m: { metadata?: { namespace?: string; name?: string } }): string => `${m.metadata?.namespace ?? "default"}/${m.metadata?.name ?? ""}`;
  return {
    namespaces: new Map((o.namespaces ?? [ns("default", { "istio.io/dataplane-mode": "ambient" })]).map((n) => [n.metadata!.name!, n])),
    pods: new Map((o.pods ?? []).map((p) => [key(p), p])),
    services: new Map((o.services ?? []).map((s) => [key(s), s])),
    endpointSlices: new Map((o.slices ?? []).map((s) => [key(s), s])),
    authorizationPolicies: new Map(),
  };
}
const byName = (ws: readonly Workload[]): Record<string, Workload> => Object.fromEntries(ws.map((w) => [w.name, w]));

describe("pods become workloads", () => {
  test("enrolled by the namespace label or the pod label; `none` opts out; not enrolled and not selected: no workload", () => {
    const { snapshot } = translate(
      objects({
        namespaces: [ns("mesh", { "istio.io/dataplane-mode": "ambient" }), ns("plain")],
        pods: [
          pod("by-ns", { ns: "mesh", ips: ["10.244.1.1"] }),
          pod("opted-out", { ns: "mesh", ips: ["10.244.1.2"], labels: { "istio.io/dataplane-mode": "none" } }),
          pod("by-pod", { ns: "plain", ips: ["10.244.1.3"], labels: { "istio.io/dataplane-mode": "ambient" } }),
          pod("bystander", { ns: "plain", ips: ["10.244.1.4"] }),
        ],
      }),
      NAMES,
    );
    expect(snapshot.workloads.map((w) => [w.name, w.protocol])).toEqual([
      ["by-ns", "HBONE"],
      ["by-pod", "HBONE"],
    ]);
  });

  test("never: host-network pods, pods with a sidecar, pods not running or without an IP; a sidecar pod a service selects is plain TCP", () => {
    const { snapshot } = translate(
      objects({
        pods: [
          pod("host", { ips: ["172.18.0.2"], hostNetwork: true }),
          pod("pending", { ips: [], phase: "Pending" }),
          pod("done", { ips: ["10.244.1.9"], phase: "Succeeded" }),
          pod("sidecar", { ips: ["10.244.1.6"], annotations: { "sidecar.istio.io/status": "{}" }, labels: { app: "legacy" } }),
          pod("proxy-container", { ips: ["10.244.1.7"], containers: ["app", "istio-proxy"] }),
        ],
        services: [svc("legacy", [{ port: 80, targetPort: 8080 }])],
      }),
      NAMES,
    );
    expect(snapshot.workloads.map((w) => [w.name, w.protocol])).toEqual([["sidecar", "TCP"]]);
  });

  test("every field: uid, identity, every pod IP, node, labels, canonical names, owner, health", () => {
    const { snapshot } = translate(
      objects({
        pods: [
          pod("web-7d9f8-abcde", {
            ips: ["10.244.1.5", "fd00::0005"],
            node: "node-b",
            sa: "web",
            labels: { app: "web", version: "v2", "pod-template-hash": "7d9f8" },
            owner: { kind: "ReplicaSet", name: "web-7d9f8" },
            ready: false,
          }),
          pod("db-0", { ips: ["10.244.1.6"], labels: { "service.istio.io/canonical-name": "database", "app.kubernetes.io/name": "db", "app.kubernetes.io/version": "15" }, owner: { kind: "StatefulSet", name: "db" } }),
          pod("agent-x", { ips: ["10.244.1.7"], owner: { kind: "DaemonSet", name: "agent" } }),
          pod("lonely", { ips: ["10.244.1.8"] }),
        ],
      }),
      NAMES,
    );
    const w = byName(snapshot.workloads);
    expect(w["web-7d9f8-abcde"]).toMatchObject({
      uid: "Kubernetes//Pod/default/web-7d9f8-abcde",
      namespace: "default",
      serviceAccount: "web",
      workloadIps: ["10.244.1.5", "fd00::5"],
      protocol: "HBONE",
      node: "node-b",
      trustDomain: "cluster.local",
      clusterId: "Kubernetes",
      canonicalName: "web",
      canonicalRevision: "v2",
      workloadType: "deployment",
      workloadName: "web",
      status: "Unhealthy",
      capacity: 1,
    });
    expect(w["web-7d9f8-abcde"]!.labels.get("version")).toBe("v2");
    expect(w["db-0"]).toMatchObject({ canonicalName: "database", canonicalRevision: "15", workloadType: "statefulset", workloadName: "db", serviceAccount: "default", status: "Healthy" });
    expect(w["agent-x"]).toMatchObject({ workloadType: "daemonset", workloadName: "agent", canonicalName: "agent", canonicalRevision: "latest" });
    expect(w["lonely"]).toMatchObject({ workloadType: "pod", workloadName: "lonely", canonicalName: "lonely" });
  });

  test("an IP two pods claim (a finished pod's successor): one workload, the mesh pod, then the newer; the other is reported", () => {
    const { snapshot, problems } = translate(
      objects({
        namespaces: [ns("default", { "istio.io/dataplane-mode": "ambient" }), ns("plain")],
        pods: [
          pod("old", { ips: ["10.244.1.5"], created: "2026-12-01T10:00:00Z" }),
          pod("new", { ips: ["10.244.1.5"], created: "2026-12-01T11:00:00Z" }),
          pod("plain", { ns: "plain", ips: ["10.244.1.5"], labels: { app: "p" } }),
        ],
        services: [svc("p", [{ port: 80 }], { ns: "plain" })],
      }),
      NAMES,
    );
    expect(snapshot.workloads.map((w) => w.name)).toEqual(["new"]);
    expect(problems.map((p) => `${p.namespace}/${p.name}`).sort()).toEqual(["default/old", "plain/plain"]);
    expect(problems[0]!.reason).toMatch(/10\.244\.1\.5 is already Kubernetes\/\/Pod\/default\/new's/);
  });
});

describe("services and their endpoints", () => {
  test("cluster IPs, ports and target ports; headless has no VIP; ExternalName is no service", () => {
    const { snapshot } = translate(
      objects({
        services: [
          svc("echo", [{ name: "http", port: 80, targetPort: 8080 }, { name: "same", port: 9090 }, { name: "udp", port: 53 }], { ips: ["10.96.0.20", "fd00:96::20"] }),
          svc("db", [{ port: 5432 }], { ips: ["None"] }),
          { metadata: { name: "ext", namespace: "default" }, spec: { type: "ExternalName" } },
        ],
      }),
      NAMES,
    );
    expect(snapshot.services.map((s) => ({ ...s, ports: Object.fromEntries(s.ports) }))).toEqual([
      { name: "db", namespace: "default", hostname: "db.default.svc.cluster.local", vips: [], ports: { 5432: 5432 }, subjectAltNames: [] },
      {
        name: "echo",
        namespace: "default",
        hostname: "echo.default.svc.cluster.local",
        vips: [
          { network: "", address: "10.96.0.20" },
          { network: "", address: "fd00:96::20" },
        ],
        ports: { 80: 8080, 9090: 9090, 53: 53 },
        subjectAltNames: [],
      },
    ]);
  });

  test("endpoints from the slices: ready ones; a named target port from each pod's own container ports", () => {
    const { snapshot } = translate(
      objects({
        pods: [
          pod("a", { ips: ["10.244.1.5"], labels: { app: "echo" }, ports: [{ name: "web", containerPort: 8080 }] }),
          pod("b", { ips: ["10.244.2.5"], labels: { app: "echo" }, ports: [{ name: "web", containerPort: 9000 }] }),
          pod("c", { ips: ["10.244.2.6"], labels: { app: "echo" }, ready: false }),
        ],
        services: [svc("echo", [{ name: "http", port: 80, targetPort: "web" }, { name: "admin", port: 81, targetPort: 8081 }])],
        slices: [slice("echo-abc", "echo", [{ ip: "10.244.1.5", pod: "a" }, { ip: "10.244.2.5", pod: "b" }, { ip: "10.244.2.6", pod: "c", ready: false }], [{ name: "http", port: 8080 }])],
      }),
      NAMES,
    );
    const store = createMeshStore(snapshot);
    const echo = store.serviceByVip("10.96.0.20")!;
    expect(store.endpoints(echo).map((w) => w.name).sort()).toEqual(["a", "b"]);
    const w = byName(snapshot.workloads);
    expect(Object.fromEntries(w["a"]!.services.get("default/echo.default.svc.cluster.local")!)).toEqual({ 80: 8080 });
    expect(Object.fromEntries(w["b"]!.services.get("default/echo.default.svc.cluster.local")!)).toEqual({ 80: 9000 });
    expect(pickEndpoint(store, echo, 81, () => 0)).toMatchObject({ port: 8081 });
    expect(w["c"]!.services.size).toBe(0);
  });

  test("terminating endpoints serve only while the service has no ready one (as kube-proxy falls back)", () => {
    const pods = [pod("old", { ips: ["10.244.1.5"], labels: { app: "echo" } }), pod("next", { ips: ["10.244.1.6"], labels: { app: "echo" } })];
    const terminating: Ep = { ip: "10.244.1.5", pod: "old", ready: false, serving: true, terminating: true };
    const alone = translate(objects({ pods, services: [svc("echo", [{ port: 80 }])], slices: [slice("s", "echo", [terminating])] }), NAMES).snapshot;
    expect(alone.workloads.filter((w) => w.services.size > 0).map((w) => w.name)).toEqual(["old"]);
    const both = translate(objects({ pods, services: [svc("echo", [{ port: 80 }])], slices: [slice("s", "echo", [terminating, { ip: "10.244.1.6", pod: "next" }])] }), NAMES).snapshot;
    expect(both.workloads.filter((w) => w.services.size > 0).map((w) => w.name)).toEqual(["next"]);
  });

  test("a slice naming a pod not seen yet leaves it out (never guessed as plain TCP); it converges when the pod arrives", () => {
    const services = [svc("echo", [{ port: 80 }])];
    const slices = [slice("s", "echo", [{ ip: "10.244.1.5", pod: "late" }])];
    expect(translate(objects({ services, slices }), NAMES).snapshot.workloads).toEqual([]);
    const later = translate(objects({ services, slices, pods: [pod("late", { ips: ["10.244.1.5"], labels: { app: "echo" } })] }), NAMES).snapshot;
    expect(later.workloads.map((w) => [w.name, w.protocol, [...w.services.keys()]])).toEqual([["late", "HBONE", ["default/echo.default.svc.cluster.local"]]]);
  });

  test("endpoints that are no pod (the API server, a hand-written slice) and host-network pods are plain TCP endpoints", () => {
    const { snapshot } = translate(
      objects({
        pods: [pod("node-exporter", { ips: ["172.18.0.3"], hostNetwork: true, labels: { app: "metrics" } })],
        services: [svc("kubernetes", [{ name: "https", port: 443, targetPort: 6443 }], { ips: ["10.96.0.1"], selector: {} }), svc("metrics", [{ name: "m", port: 9100, targetPort: "metrics" }], { ips: ["10.96.0.30"] })],
        slices: [slice("kubernetes", "kubernetes", [{ ip: "172.18.0.2" }]), slice("metrics-1", "metrics", [{ ip: "172.18.0.3", pod: "node-exporter", node: "node-a" }], [{ name: "m", port: 9100 }])],
      }),
      NAMES,
    );
    const store = createMeshStore(snapshot);
    expect(pickEndpoint(store, store.serviceByVip("10.96.0.1")!, 443, () => 0)).toMatchObject({ workload: { workloadIps: ["172.18.0.2"], protocol: "TCP", workloadType: "endpoint" }, port: 6443 });
    expect(pickEndpoint(store, store.serviceByVip("10.96.0.30")!, 9100, () => 0)).toMatchObject({ workload: { name: "node-exporter", protocol: "TCP", node: "node-a" }, port: 9100 });
  });

  test("the same objects give the same snapshot, whatever order they came in", () => {
    const pods = [pod("b", { ips: ["10.244.1.6"] }), pod("a", { ips: ["10.244.1.5"] })];
    const one = translate(objects({ pods, services: [svc("y", [{ port: 1 }], { ips: ["10.96.0.2"] }), svc("x", [{ port: 1 }], { ips: ["10.96.0.3"] })] }), NAMES).snapshot;
    const two = translate(objects({ pods: [...pods].reverse(), services: [svc("x", [{ port: 1 }], { ips: ["10.96.0.3"] }), svc("y", [{ port: 1 }], { ips: ["10.96.0.2"] })] }), NAMES).snapshot;
    expect(two).toEqual(one);
    expect(one.workloads.map((w) => w.name)).toEqual(["a", "b"]);
  });
});

describe("a translator that follows changes", () => {
  type Kind = keyof KubeObjects;
  /** A store fed by a translator's updates, and the objects it follows; each change is checked against a fresh translation. */
  function follower(o: KubeObjects): { change(kind: Kind, key: string, obj: unknown): MeshDelta; store: ReturnType<typeof createMeshStore> } {
    const tr = createTranslator(NAMES);
    const store = createMeshStore();
    const first = tr.update(o, {});
    expect(first.full).toBe(true);
    store.replace({ workloads: first.delta.workloads ?? [], services: first.delta.services ?? [], policies: first.delta.policies ?? [] });
    return {
      store,
      change(kind, key, obj) {
        const m = o[kind] as Map<string, unknown>;
        if (obj === undefined) m.delete(key);
        else m.set(key, obj);
        const u = tr.update(o, { [kind]: [key] });
        expect(u.full).toBe(false);
        store.apply(u.delta);
        const fresh = translate(o, NAMES);
        const s = store.snapshot();
        expect({ workloads: [...s.workloads].sort((a, b) => (a.uid < b.uid ? -1 : 1)), services: [...s.services].sort((a, b) => (`${a.namespace}/${a.hostname}` < `${b.namespace}/${b.hostname}` ? -1 : 1)), policies: s.policies }).toEqual(fresh.snapshot);
        expect(u.problems).toEqual(fresh.problems);
        return u.delta;
      },
    };
  }

  test("after every kind of change, the store it feeds holds what a fresh translation gives", () => {
    const o = objects({
      namespaces: [ns("default", { "istio.io/dataplane-mode": "ambient" }), ns("plain")],
      pods: [pod("a", { ips: ["10.244.1.5"], labels: { app: "echo" } }), pod("b", { ips: ["10.244.1.6"] }), pod("out", { ns: "plain", ips: ["10.244.1.7"], labels: { app: "legacy" } })],
      services: [svc("echo", [{ port: 80, targetPort: 8080 }])],
      slices: [slice("s", "echo", [{ ip: "10.244.1.5", pod: "a" }])],
    });
    const f = follower(o);
    f.change("pods", "default/b", pod("b", { ips: ["10.244.1.6"], labels: { v: "2" } }));
    f.change("services", "plain/legacy", svc("legacy", [{ port: 80 }], { ns: "plain", ips: ["10.96.0.30"] }));
    f.change("endpointSlices", "default/s", slice("s", "echo", [{ ip: "10.244.1.5", pod: "a" }, { ip: "10.244.1.6", pod: "b" }]));
    f.change("namespaces", "default", ns("default"));
    f.change("namespaces", "plain", ns("plain", { "istio.io/dataplane-mode": "ambient" }));
    f.change("services", "plain/legacy", undefined);
    f.change("pods", "default/a", undefined);
    f.change("namespaces", "default", ns("default", { "istio.io/dataplane-mode": "ambient" }));
    // A slice naming a pod not there yet; then the pod; then its service changes to a named target port.
    f.change("endpointSlices", "default/late", slice("late", "echo", [{ ip: "10.244.1.8", pod: "c" }], [{ name: "web", port: 9000 }]));
    f.change("pods", "default/c", pod("c", { ips: ["10.244.1.8"], ports: [{ name: "web", containerPort: 9090 }] }));
    f.change("services", "default/echo", svc("echo", [{ name: "web", port: 80, targetPort: "web" }]));
    // ready -> terminating (the fallback: no other ready endpoint) -> gone.
    f.change("endpointSlices", "default/s", slice("s", "echo", []));
    f.change("endpointSlices", "default/late", slice("late", "echo", [{ ip: "10.244.1.8", pod: "c", ready: false, serving: true, terminating: true }]));
    f.change("endpointSlices", "default/late", undefined);
    // A host-network pod in a slice is a bare address; back on the pod network, a pod again.
    f.change("endpointSlices", "default/s", slice("s", "echo", [{ ip: "10.244.1.6", pod: "b" }]));
    f.change("pods", "default/b", pod("b", { ips: ["10.244.1.6"], hostNetwork: true }));
    f.change("pods", "default/b", pod("b", { ips: ["10.244.1.6"] }));
    // A contested IP: the newer pod wins; deleted, the older one comes back.
    f.change("pods", "default/old", pod("old", { ips: ["10.244.1.9"], created: "2026-12-01T10:00:00Z" }));
    f.change("pods", "default/new", pod("new", { ips: ["10.244.1.9"], created: "2026-12-01T11:00:00Z" }));
    expect(f.store.workloadByIp("10.244.1.9")?.name).toBe("new");
    f.change("pods", "default/new", undefined);
    expect(f.store.workloadByIp("10.244.1.9")?.name).toBe("old");
    // ExternalName is no service; a policy comes and goes.
    f.change("services", "default/echo", { ...svc("echo", [{ port: 80 }]), spec: { type: "ExternalName", externalName: "x.example" } });
    f.change("authorizationPolicies", "default/deny", { metadata: { name: "deny", namespace: "default" }, spec: { action: "DENY", rules: [{ to: [{ operation: { ports: ["9"] } }] }] } });
    f.change("authorizationPolicies", "default/deny", undefined);
    expect(f.store.snapshot().workloads.map((w) => [w.name, w.protocol]).sort()).toEqual([
      ["b", "HBONE"],
      ["c", "HBONE"],
      ["old", "HBONE"],
      ["out", "HBONE"],
    ]);
  });

  test("a change costs what it changed: one pod's label is one workload in the delta; the others keep their objects", () => {
    const pods = Array.from({ length: 50 }, (_, i) => pod(`p${i}`, { ips: [`10.244.2.${i + 1}`], labels: { app: "echo" } }));
    const o = objects({ pods, services: [svc("echo", [{ port: 80 }])], slices: [slice("s", "echo", pods.slice(0, 5).map((p, i) => ({ ip: `10.244.2.${i + 1}`, pod: p.metadata!.name! })))] });
    const f = follower(o);
    const before = f.store.workloadByUid("Kubernetes//Pod/default/p30");
    const d = f.change("pods", "default/p30", pod("p30", { ips: ["10.244.2.31"], labels: { app: "echo", v: "2" } }));
    expect(d.workloads?.map((w) => w.name)).toEqual(["p30"]);
    expect(d.removedWorkloads ?? []).toEqual([]);
    expect(d.services).toBeUndefined();
    expect(d.policies).toBeUndefined();
    expect(f.store.workloadByUid("Kubernetes//Pod/default/p31")).toBe(f.store.workloadByUid("Kubernetes//Pod/default/p31"));
    expect(f.store.workloadByUid("Kubernetes//Pod/default/p30")).not.toBe(before);
    // A pod a slice names: the pods of that service are looked at again, and only what changed is in the delta.
    const e = f.change("pods", "default/p1", pod("p1", { ips: ["10.244.2.2"], labels: { app: "echo", v: "3" } }));
    expect(e.workloads?.map((w) => w.name)).toEqual(["p1"]);
  });

  test("400 random changes of every kind (seeded): after each, the same as a fresh translation", () => {
    let seed = 0x5eed;
    const rnd = (n: number): number => {
      // mulberry32: the same sequence on every run.
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const pick = <T,>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
    const nss = ["default", "plain"];
    const podNames = ["p0", "p1", "p2", "p3", "p4", "p5"];
    const ips = ["10.244.3.1", "10.244.3.2", "10.244.3.3", "10.244.3.4"];
    const svcNames = ["s0", "s1", "s2"];
    const o = objects({ namespaces: [ns("default", { "istio.io/dataplane-mode": "ambient" }), ns("plain")] });
    const f = follower(o);
    for (let i = 0; i < 400; i++) {
      const namespace = pick(nss);
      switch (rnd(6)) {
        case 0:
          f.change("namespaces", namespace, ns(namespace, rnd(2) ? { "istio.io/dataplane-mode": "ambient" } : {}));
          break;
        case 1:
        case 2: {
          const name = pick(podNames);
          const labels: Record<string, string> = { app: pick(svcNames) };
          if (rnd(4) === 0) labels["istio.io/dataplane-mode"] = pick(["none", "ambient"]);
          f.change(
            "pods",
            `${namespace}/${name}`,
            rnd(5) === 0
              ? undefined
              : pod(name, { ns: namespace, labels, ips: [pick(ips)], hostNetwork: rnd(8) === 0, phase: rnd(8) === 0 ? "Pending" : "Running", created: `2026-12-01T10:0${rnd(10)}:00Z`, ports: [{ name: "web", containerPort: 9000 + rnd(3) }] }),
          );
          break;
        }
        case 3: {
          const name = pick(svcNames);
          const kind = rnd(6);
          f.change("services", `${namespace}/${name}`, kind === 0 ? undefined : kind === 1 ? { ...svc(name, [{ port: 80 }], { ns: namespace }), spec: { type: "ExternalName" } } : svc(name, [{ name: "web", port: 80, targetPort: rnd(2) ? "web" : 8080 }], { ns: namespace, ips: [`10.96.3.${1 + svcNames.indexOf(name) + (namespace === "plain" ? 10 : 0)}`] }));
          break;
        }
        case 4: {
          const service = pick(svcNames);
          const name = `${service}-${rnd(2)}`;
          const eps: Ep[] = Array.from({ length: rnd(3) }, () => ({ ip: pick(ips), ...(rnd(4) ? { pod: pick(podNames) } : {}), ready: rnd(3) > 0, serving: true, terminating: rnd(2) === 0 }));
          f.change("endpointSlices", `${namespace}/${name}`, rnd(5) === 0 ? undefined : slice(name, service, eps, [{ name: "web", port: 9500 }], namespace));
          break;
        }
        default:
          f.change("authorizationPolicies", `${namespace}/ap${rnd(2)}`, rnd(3) === 0 ? undefined : { metadata: { name: "ap", namespace }, spec: { action: pick(["ALLOW", "DENY", "AUDIT"]), rules: [{ to: [{ operation: { ports: [String(rnd(100))] } }] }] } });
      }
    }
    expect(f.store.snapshot().workloads.length).toBeGreaterThan(0);
  });
});
