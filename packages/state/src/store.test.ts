import { describe, expect, it, vi } from "vitest";
import { authorize } from "./authz.js";
import { createMeshStore } from "./store.js";
import type { MeshSnapshot, Policy, Service, Workload } from "./types.js";
import { workload } from "./test-support/workload.js";

const echo: Service = {
  name: "echo", namespace: "default", hostname: "echo.default.svc.cluster.local",
  vips: [{ network: "", address: "10.96.0.20" }, { network: "", address: "fd00::20" }], ports: new Map([[80, 8080]]), subjectAltNames: [],
};
const policy = (name: string, namespace: string, scope: Policy["scope"], selector: [string, string][] = []): Policy => ({
  name, namespace, scope, action: "Allow", dryRun: false, selector: new Map(selector), rules: [],
});

const ep = new Map([["default/echo.default.svc.cluster.local", new Map<number, number>()]]);
const snap: MeshSnapshot = {
  workloads: [
    workload("a", ["10.0.0.1", "fd00::1"], { services: ep, labels: new Map([["app", "echo"], ["v", "1"]]) }),
    workload("b", ["10.0.0.2"], { services: ep, node: "node-b", labels: new Map([["app", "echo"]]) }),
    workload("c", ["10.0.0.3"], { namespace: "other" }),
  ],
  services: [echo],
  policies: [
    policy("g", "istio-system", "Global"),
    policy("ns", "default", "Namespace"),
    policy("sel-v1", "default", "WorkloadSelector", [["app", "echo"], ["v", "1"]]),
    policy("sel-app", "default", "WorkloadSelector", [["app", "echo"]]),
    policy("other-ns", "other", "Namespace"),
    policy("sel-other", "other", "WorkloadSelector", [["app", "echo"]]),
  ],
};
const names = (xs: readonly { name: string }[]) => xs.map((x) => x.name);

describe("createMeshStore", () => {
  it("starts empty at version 0, or at version 1 with a snapshot", () => {
    const empty = createMeshStore();
    expect(empty.version).toBe(0);
    expect(empty.snapshot()).toEqual({ workloads: [], services: [], policies: [] });
    expect(empty.workloadByIp("10.0.0.1")).toBeUndefined();
    expect(createMeshStore(snap).version).toBe(1);
  });

  it("finds workloads by IP in any textual form, and by uid", () => {
    const s = createMeshStore(snap);
    expect(s.workloadByIp("10.0.0.1")?.name).toBe("a");
    expect(s.workloadByIp("::ffff:10.0.0.2")?.name).toBe("b");
    expect(s.workloadByIp("FD00:0::1")?.name).toBe("a");
    expect(s.workloadByIp("10.0.0.9")).toBeUndefined();
    expect(s.workloadByIp("junk")).toBeUndefined();
    expect(s.workloadByUid("c//v1/Pod/default/c")?.name).toBe("c");
  });

  it("finds services by VIP, hostname and key", () => {
    const s = createMeshStore(snap);
    expect(s.serviceByVip("10.96.0.20")).toBe(echo);
    expect(s.serviceByVip("::ffff:10.96.0.20")).toBe(echo);
    expect(s.serviceByVip("FD00::20")).toBe(echo);
    expect(s.serviceByVip("10.0.0.1")).toBeUndefined();
    expect(s.serviceByHostname("echo.default.svc.cluster.local")).toBe(echo);
    expect(s.serviceByHostname("Echo.Default.svc.cluster.local")).toBe(echo);
    expect(s.serviceByKey("default/echo.default.svc.cluster.local")).toBe(echo);
  });

  it("lists endpoints and workloads on a node", () => {
    const s = createMeshStore(snap);
    expect(names(s.endpoints(echo))).toEqual(["a", "b"]);
    expect(s.endpoints({ namespace: "x", hostname: "y" })).toEqual([]);
    expect(names(s.workloadsOnNode("node-a"))).toEqual(["a", "c"]);
    expect(s.workloadsOnNode("node-z")).toEqual([]);
  });

  it("selects the policies that apply to a workload", () => {
    const s = createMeshStore(snap);
    const [a, b, c] = snap.workloads;
    if (!a || !b || !c) throw new Error("fixture");
    expect(names(s.policiesFor(a))).toEqual(["g", "ns", "sel-v1", "sel-app"]);
    expect(names(s.policiesFor(b))).toEqual(["g", "ns", "sel-app"]);
    expect(names(s.policiesFor(c))).toEqual(["g", "other-ns"]);
    expect(names(s.policiesFor(workload("z", ["1.1.1.1"], { namespace: "lonely" })))).toEqual(["g"]);
    expect(s.policiesFor(a)).toBe(s.policiesFor(a)); // cached per workload
  });

  it("applies a policy selected by name (delta xDS) only to the workloads that name it, from any namespace", () => {
    const byName = (name: string, namespace: string): Policy => ({ ...policy(name, namespace, "WorkloadSelector"), selectedByName: true });
    const s = createMeshStore({
      workloads: [
        workload("a", ["10.0.0.1"], { authorizationPolicies: ["default/pick", "istio-system/root-pick"] }),
        workload("b", ["10.0.0.2"]),
        workload("c", ["10.0.0.3"], { namespace: "other", authorizationPolicies: ["istio-system/root-pick", "default/pick", "gone/nothing"] }),
      ],
      services: [],
      policies: [byName("pick", "default"), byName("root-pick", "istio-system"), policy("ns", "default", "Namespace")],
    });
    const [a, b, c] = s.snapshot().workloads as [Workload, Workload, Workload];
    expect(names(s.policiesFor(a))).toEqual(["pick", "ns", "root-pick"]);
    expect(names(s.policiesFor(b))).toEqual(["ns"]);
    // The list is the server's word (istiod names root-namespace policies this way).
    expect(names(s.policiesFor(c))).toEqual(["root-pick", "pick", "nothing"]);
  });

  it("fails closed on a policy a workload names that the store does not hold (refused, or not arrived yet)", () => {
    const s = createMeshStore({ workloads: [workload("a", ["10.0.0.1"], { authorizationPolicies: ["default/later"] })], services: [], policies: [] });
    const a = s.snapshot().workloads[0]!;
    const stand = s.policiesFor(a);
    expect(stand).toMatchObject([{ name: "later", namespace: "default", action: "Allow", rules: [], missing: true }]);
    expect(authorize(stand, { srcIp: "10.0.0.9", dstIp: "10.0.0.1", dstPort: 80 })).toMatchObject({ allow: false, reason: "denied-no-allow-match" });
    // Once it arrives it is the one that applies.
    s.apply({ policies: [{ ...policy("later", "default", "WorkloadSelector"), selectedByName: true, action: "Deny", rules: [[[{ destinationPorts: [9] }]]] }] });
    expect(s.policiesFor(a)).toMatchObject([{ name: "later", action: "Deny" }]);
    expect(authorize(s.policiesFor(a), { srcIp: "10.0.0.9", dstIp: "10.0.0.1", dstPort: 80 }).allow).toBe(true);
  });

  it("replaces: bumps the version, rebuilds the indexes, notifies listeners", () => {
    const s = createMeshStore(snap);
    const seen: number[] = [];
    const off = s.onChange((v) => seen.push(v));
    const next: MeshSnapshot = { workloads: [workload("n", ["10.0.0.1"])], services: [], policies: [] };
    s.replace(next);
    expect(s.version).toBe(2);
    expect(s.snapshot()).toBe(next);
    expect(s.workloadByIp("10.0.0.1")?.name).toBe("n");
    expect(s.workloadByIp("10.0.0.2")).toBeUndefined();
    expect(s.serviceByVip("10.96.0.20")).toBeUndefined();
    expect(seen).toEqual([2]);
    off();
    s.replace(snap);
    expect(seen).toEqual([2]);
    expect(s.version).toBe(3);
  });

  it("calls every listener even if one throws, then rethrows", () => {
    const s = createMeshStore();
    const second = vi.fn();
    s.onChange(() => {
      throw new Error("boom");
    });
    s.onChange(second);
    expect(() => s.replace(snap)).toThrow("boom");
    expect(second).toHaveBeenCalledOnce();
    expect(s.version).toBe(1);
  });

  it("applies a delta: removals, then adds and changes; a changed workload keeps its place; the indexes follow", () => {
    const s = createMeshStore(snap);
    const seen: number[] = [];
    s.onChange((v) => seen.push(v));
    const [a, b] = snap.workloads;
    if (!a || !b) throw new Error("fixture");
    // b changes node and leaves echo; a gives 10.0.0.1 to a new workload d in the same delta; c is gone.
    const b2 = workload("b", ["10.0.0.2"], { node: "node-c" });
    const a2 = workload("a", ["fd00::1"], { services: ep, labels: a.labels });
    const d = workload("d", ["10.0.0.1"], { services: ep });
    s.apply({ workloads: [d, b2, a2], removedWorkloads: ["c//v1/Pod/default/c"] });
    expect(s.version).toBe(2);
    expect(seen).toEqual([2]);
    expect(names(s.snapshot().workloads)).toEqual(["a", "b", "d"]);
    expect(s.counts()).toEqual({ workloads: 3, services: 1, policies: 6 });
    expect(s.workloadByIp("10.0.0.1")).toBe(d);
    expect(s.workloadByIp("fd00::1")).toBe(a2);
    expect(s.workloadByUid("c//v1/Pod/default/c")).toBeUndefined();
    expect(s.workloadByIp("10.0.0.3")).toBeUndefined();
    expect(names(s.endpoints(echo)).sort()).toEqual(["a", "d"]);
    expect(names(s.workloadsOnNode("node-a")).sort()).toEqual(["a", "d"]);
    expect(names(s.workloadsOnNode("node-b"))).toEqual([]);
    expect(names(s.workloadsOnNode("node-c"))).toEqual(["b"]);
    expect(s.endpoints(echo)).toBe(s.endpoints(echo)); // listed once per change
  });

  it("applies services and policies: a VIP moves, a service goes, the policies are the new set", () => {
    const s = createMeshStore(snap);
    const moved: Service = { ...echo, name: "echo2", hostname: "echo2.default.svc.cluster.local", vips: [{ network: "", address: "10.96.0.20" }] };
    s.apply({ services: [moved], removedServices: ["default/echo.default.svc.cluster.local"], policies: [policy("only", "default", "Namespace")] });
    expect(s.serviceByVip("10.96.0.20")).toBe(moved);
    expect(s.serviceByVip("fd00::20")).toBeUndefined();
    expect(s.serviceByHostname("echo.default.svc.cluster.local")).toBeUndefined();
    expect(s.serviceByKey("default/echo2.default.svc.cluster.local")).toBe(moved);
    const [a] = snap.workloads;
    expect(names(s.policiesFor(a!))).toEqual(["only"]);
    expect(s.snapshot().services).toEqual([moved]);
    // A delta without policies keeps them.
    s.apply({ removedServices: ["default/echo2.default.svc.cluster.local"] });
    expect(names(s.snapshot().policies)).toEqual(["only"]);
    expect(s.serviceByVip("10.96.0.20")).toBeUndefined();
  });
});
