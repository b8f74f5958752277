import { describe, expect, test } from "vitest";
import { createMeshStore, parseLocalConfig } from "@zt/state";
import { explain } from "./explain.js";
import type { ExplainContext } from "./explain-types.js";

// explain() on a mesh built in memory: the cases a loopback mesh cannot set up (test/explain
// covers the rest against real connections): weighted endpoints, a policy a workload names
// that discovery never delivered, a policy that throws.
const YAML = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["10.0.1.5"], protocol: HBONE, node: node-a}
- {name: web-1, namespace: default, serviceAccount: web, workloadIps: ["10.0.2.10"], protocol: HBONE, node: node-b, capacity: 3, services: {"default/web.default.svc.cluster.local": {80: 9090}}}
- {name: web-2, namespace: default, serviceAccount: web, workloadIps: ["10.0.2.11"], protocol: HBONE, node: node-b, services: {"default/web.default.svc.cluster.local": {}}}
- {name: web-3, namespace: default, serviceAccount: web, workloadIps: ["10.0.2.12"], protocol: HBONE, node: node-b, services: {"default/web.default.svc.cluster.local": {}}}
services:
- {name: web, namespace: default, vips: ["/10.96.0.1"], ports: {80: 8080, 443: 8443}}
`;

function context(): ExplainContext {
  const store = createMeshStore(parseLocalConfig(YAML, "test.yaml", { trustDomain: "cluster.local", clusterId: "c1" }));
  return { nodeName: "node-a", trustDomain: "cluster.local", outboundPolicy: "ALLOW_ANY", hbonePort: 15008, ownPorts: new Set([15000, 15008]), isLocalAddress: () => false, store, onFault: () => {} };
}

describe("explain", () => {
  test("endpoints: each with the port it is dialled on (its own map first) and its chance by capacity", () => {
    const e = explain(context(), { srcIp: "10.0.1.5", dstIp: "10.96.0.1", dstPort: 80 });
    expect(e.outbound?.service?.endpoints.map((p) => [p.workload.name, p.port, p.weight, p.chance])).toEqual([
      ["web-1", 9090, 3, 0.6],
      ["web-2", 8080, 1, 0.2],
      ["web-3", 8080, 1, 0.2],
    ]);
    expect(["web-1", "web-2", "web-3"]).toContain(e.outbound?.destination?.name);
    // web-1's own map has no 443: the service's applies.
    const tls = explain(context(), { srcIp: "10.0.1.5", dstIp: "10.96.0.1", dstPort: 443 });
    expect(tls.outbound?.service?.endpoints.map((p) => p.port)).toEqual([8443, 8443, 8443]);
    // A port the service does not expose: no endpoint can be chosen, and each says why.
    const none = explain(context(), { srcIp: "10.0.1.5", dstIp: "10.96.0.1", dstPort: 22 });
    expect(none).toMatchObject({ verdict: "refused", outbound: { kind: "refused", refused: { code: "NO_HEALTHY_ENDPOINT" } } });
    expect(none.outbound?.service?.endpoints.map((p) => p.skipped)).toEqual(["no-port", "no-port", "no-port"]);
  });

  test("endpoints that would decide differently: mixed, with each endpoint's verdict; from outside the mesh, the same per endpoint in plaintext", () => {
    const ctx = context();
    const deny = { name: "deny-9090", namespace: "default", scope: "Namespace" as const, action: "Deny" as const, dryRun: false, selector: new Map<string, string>(), rules: [[[{ destinationPorts: [9090] }]]] };
    ctx.store.apply({ policies: [deny] });
    const e = explain(ctx, { srcIp: "10.0.1.5", dstIp: "10.96.0.1", dstPort: 80 });
    expect(e.verdict).toBe("mixed");
    expect(e.outbound?.service?.verdicts).toEqual({ allow: 2, deny: 1, refused: 0 });
    expect(e.outbound?.service?.endpoints.map((p) => [p.workload.name, p.admission?.verdict, p.admission?.policy])).toEqual([["web-1", "deny", "default/deny-9090"], ["web-2", "allow", undefined], ["web-3", "allow", undefined]]);
    expect(e.summary).toMatch(/of its 3 endpoints, 2 would allow, 1 would deny/);
    // Not captured: the node's routing picks one; each mesh endpoint admits it in plaintext.
    const outside = explain(ctx, { srcIp: "10.0.9.9", dstIp: "10.96.0.1", dstPort: 80 });
    expect(outside).toMatchObject({ verdict: "mixed", outbound: { kind: "not-captured", service: { verdicts: { allow: 2, deny: 1, refused: 0 } } } });
    expect(explain(ctx, { srcIp: "10.0.9.9", dstIp: "10.96.0.1", dstPort: 22 })).toMatchObject({ verdict: "refused", summary: expect.stringMatching(/no endpoint that can take it/) });
  });

  test("a policy the destination names but discovery never delivered: denied, the stand-in shown as missing", () => {
    const ctx = context();
    const web = ctx.store.workloadByIp("10.0.2.10")!;
    ctx.store.apply({ workloads: [{ ...web, authorizationPolicies: ["istio-system/gone"] }] });
    const e = explain(ctx, { srcIp: "10.0.1.5", dstIp: "10.0.2.10", dstPort: 9090 });
    expect(e.verdict).toBe("deny");
    expect(e.inbound?.policies).toEqual([{ policy: "istio-system/gone", action: "Allow", dryRun: false, missing: true, rule: -1 }]);
    expect(e.inbound?.decision?.reason).toBe("denied-no-allow-match");
  });

  test("a policy evaluation that throws: denied on error, as the data path would", () => {
    const ctx = context();
    const broken = { ...ctx, store: { ...ctx.store, policiesFor: () => { throw new Error("boom"); } } };
    const e = explain(broken, { srcIp: "10.0.1.5", dstIp: "10.0.2.10", dstPort: 9090 });
    expect(e).toMatchObject({ verdict: "deny", inbound: { decision: { allow: false, reason: "denied-on-error" }, refused: { code: "AUTHZ_DENIED" } } });
  });
});
