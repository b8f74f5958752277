import { describe, expect, it, vi } from "vitest";
import { createMeshStore } from "./store.js";
import type { MeshSnapshot, Policy, Service } from "./types.js";
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

  it("replaces: bumps the version, rebuilds the indexes, notifies listeners", () => {
    const s = createMeshStore(snap);
    const seen: number[] = [];
    const off = s.onChange((_snap, v) => seen.push(v));
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
});
