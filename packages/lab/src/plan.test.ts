import { describe, expect, it } from "vitest";
import { inCidr } from "./ipv4.js";
import { planLab, shortToken, simpleLabSpec } from "./plan.js";
import { serviceRules } from "./services.js";
import { topologySteps } from "./topology.js";

const prefix = `zt-${String(process.pid)}-plan`;

describe("lab addressing plan (pure, no namespaces)", () => {
  it("puts nodes on 198.18.0.0/24 and pods in 198.19.<i+1>.0/24", () => {
    const plan = planLab(simpleLabSpec({ nodes: 2, pods: 2, podMode: "pod-ns" }), prefix);
    expect(plan.nodes.map((n) => [n.ns, n.uplinkIp, n.podCidr])).toEqual([
      [`${prefix}-n0`, "198.18.0.1", "198.19.1.0/24"],
      [`${prefix}-n1`, "198.18.0.2", "198.19.2.0/24"],
    ]);
    expect(plan.pods.map((p) => [p.name, p.ip, p.ns])).toEqual([
      ["pod-1-1", "198.19.1.10", `${prefix}-n0-p0`],
      ["pod-1-2", "198.19.1.11", `${prefix}-n0-p1`],
      ["pod-2-1", "198.19.2.10", `${prefix}-n1-p0`],
      ["pod-2-2", "198.19.2.11", `${prefix}-n1-p1`],
    ]);
    for (const p of plan.pods) expect(inCidr(p.ip, "198.18.0.0/15")).toBe(true);
    const ifs = [plan.bridge, ...plan.nodes.flatMap((n) => [n.uplinkIf, n.fabricIf]), ...plan.pods.flatMap((p) => [p.hostIf, p.podIf])];
    expect(new Set(ifs).size).toBe(ifs.length);
    for (const name of ifs) expect(name?.length).toBeLessThanOrEqual(15);
    expect(plan.chain).toBe(`${prefix.toUpperCase()}-SVC`);
  });

  it("keeps host-ips pods in their node namespace", () => {
    const plan = planLab(simpleLabSpec({ nodes: 1, pods: 1, podMode: "host-ips" }), prefix);
    expect(plan.pods[0]?.ns).toBe(`${prefix}-n0`);
    expect(plan.pods[0]?.hostIf).toBeUndefined();
  });

  it("never plans a default route for a node or the fabric", () => {
    const plan = planLab(simpleLabSpec({ nodes: 3, pods: 2, podMode: "pod-ns" }), prefix);
    const routes = topologySteps(plan).filter((s) => s.argv.includes("route") && s.argv.includes("default"));
    const podNs = new Set(plan.pods.map((p) => p.ns));
    for (const r of routes) expect(podNs.has(r.argv[2] ?? "")).toBe(true);
    expect(routes).toHaveLength(plan.pods.length);
  });

  it("rejects addresses and prefixes outside the plan", () => {
    const bad = simpleLabSpec({ nodes: 2, pods: 1, podMode: "host-ips" });
    bad.nodes[0]!.pods[0]!.ip = "198.19.2.50";
    expect(() => planLab(bad, prefix)).toThrow(/pod range 198\.19\.1\.0\/24/);
    expect(() => planLab(simpleLabSpec({ nodes: 1, pods: 1, podMode: "host-ips" }), "zt-1-x")).toThrow(/must be zt-/);
    expect(() => planLab(simpleLabSpec({ nodes: 1, pods: 1, podMode: "host-ips" }), "lab")).toThrow(/must be zt-/);
    const svc = (vip: string, ip: string) =>
      simpleLabSpec({ nodes: 1, pods: 1, podMode: "host-ips", services: [{ vip, port: 80, endpoints: [{ ip, port: 1 }] }] });
    expect(() => planLab(svc("10.96.0.1", "198.19.1.10"), prefix)).toThrow(/inside 198\.18\.128\.0\/17/);
    expect(() => planLab(svc("198.18.128.1", "8.8.8.8"), prefix)).toThrow(/not a pod or node address/);
  });

  it("hashes long prefixes into short interface tokens", () => {
    expect(shortToken("zt-1234")).toBe("zt1234");
    const t = shortToken("zt-1234567-longsuffix");
    expect(t).toMatch(/^z[0-9a-z]{7}$/);
  });

  it("spreads a service over its endpoints like kube-proxy", () => {
    const rules = serviceRules("ZT-1-SVC", [
      { vip: "198.18.128.1", port: 80, endpoints: [1, 2, 3].map((k) => ({ ip: `198.19.1.${String(k)}`, port: 8080 })) },
    ]);
    const probs = rules.map((r) => r[r.indexOf("--probability") + 1] ?? "").filter((_, i) => rules[i]?.includes("--probability"));
    expect(probs).toEqual(["0.33333", "0.50000"]);
    expect(rules.at(-1)).toContain("198.19.1.3:8080");
    expect(rules.at(-1)).not.toContain("statistic");
    expect(rules.slice(1, 3).map((r) => r.slice(5))).toEqual([["PREROUTING", "-j", "ZT-1-SVC"], ["OUTPUT", "-j", "ZT-1-SVC"]]);
  });
});
