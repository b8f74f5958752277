import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { ProxyContext } from "./context.js";
import { ProxyError } from "./errors.js";
import { baggage, route, traceparent, type Route } from "./route.js";
import { testContext } from "./test-support/context.js";

// route(): every outbound decision from the mesh state alone.
const YAML = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["10.0.1.5"], protocol: HBONE, node: node-a, canonicalName: sleep, canonicalRevision: v2, workloadType: deployment, workloadName: sleep-dep}
- {name: plain, namespace: default, workloadIps: ["10.0.1.6"], protocol: TCP, node: node-a}
- {name: far, namespace: default, workloadIps: ["10.0.2.9"], protocol: HBONE, node: node-b}
- name: web-1
  namespace: default
  serviceAccount: web
  workloadIps: ["10.0.2.10"]
  protocol: HBONE
  node: node-b
  services: {"default/web.default.svc.cluster.local": {80: 9090}}
- name: web-legacy
  namespace: default
  workloadIps: ["10.0.2.11"]
  protocol: TCP
  node: node-b
  status: Unhealthy
  services: {"default/web.default.svc.cluster.local": {80: 8080}}
- name: db
  namespace: default
  workloadIps: ["10.0.2.12"]
  protocol: TCP
  node: node-b
  services: {"default/db.default.svc.cluster.local": {}}
services:
- {name: web, namespace: default, vips: ["/10.96.0.1"], ports: {80: 8080}, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/web-alt"]}
- {name: db, namespace: default, vips: ["/10.96.0.2"], ports: {5432: 0}}
`;
let ctx: ProxyContext & { dispose(): void };
let strict: ProxyContext & { dispose(): void };
beforeAll(async () => {
  ctx = await testContext(YAML);
  strict = await testContext(YAML, { outboundPolicy: "REGISTRY_ONLY" });
});
afterAll(() => {
  ctx.dispose();
  strict.dispose();
});

const req = (src: string, dst: string, port: number): { srcIp: string; srcPort: number; dstIp: string; dstPort: number } => ({ srcIp: src, srcPort: 40000, dstIp: dst, dstPort: port });
function refusal(c: ProxyContext, src: string, dst: string, port: number): string {
  try {
    route(c, req(src, dst, port));
  } catch (e) {
    return (e as ProxyError).code;
  }
  return "routed";
}

describe("route", () => {
  test("sources: unknown, on another node, outside the mesh", () => {
    expect(refusal(ctx, "10.0.9.9", "10.0.2.9", 80)).toBe("UNKNOWN_SOURCE");
    expect(refusal(ctx, "10.0.2.9", "10.0.2.10", 80)).toBe("UNKNOWN_SOURCE");
    expect(refusal(ctx, "10.0.1.6", "10.0.2.10", 80)).toBe("UNKNOWN_SOURCE");
  });

  test("the agent's own port on a local address is a loop", () => {
    expect(refusal(ctx, "10.0.1.5", "127.0.0.1", 15080)).toBe("LOOP");
    expect(refusal(ctx, "10.0.1.5", "127.0.0.1", 8080)).toBe("routed");
  });

  test("a VIP goes to its healthy endpoint with the per-endpoint target port, over HBONE", () => {
    const r = route(ctx, req("10.0.1.5", "10.96.0.1", 80)) as Extract<Route, { kind: "hbone" }>;
    expect(r).toMatchObject({ kind: "hbone", ip: "10.0.2.10", port: 9090 });
    expect(r.expected).toEqual(["spiffe://cluster.local/ns/default/sa/web", "spiffe://cluster.local/ns/default/sa/web-alt"]);
  });

  test("a VIP port the service does not expose, or without endpoints, is refused", () => {
    expect(refusal(ctx, "10.0.1.5", "10.96.0.1", 81)).toBe("NO_HEALTHY_ENDPOINT");
  });

  test("a service endpoint outside the mesh is passthrough, target port 0 meaning the same port", () => {
    expect(route(ctx, req("10.0.1.5", "10.96.0.2", 5432))).toMatchObject({ kind: "passthrough", ip: "10.0.2.12", port: 5432 });
  });

  test("pod IPs: HBONE for mesh workloads, TCP for others", () => {
    expect(route(ctx, req("10.0.1.5", "10.0.2.9", 7000))).toMatchObject({ kind: "hbone", ip: "10.0.2.9", port: 7000, expected: ["spiffe://cluster.local/ns/default/sa/default"] });
    expect(route(ctx, req("10.0.1.5", "10.0.2.11", 7000))).toMatchObject({ kind: "passthrough", ip: "10.0.2.11" });
  });

  test("unknown destinations: passthrough under ALLOW_ANY, refused under REGISTRY_ONLY", () => {
    expect(route(ctx, req("10.0.1.5", "192.0.2.1", 443))).toMatchObject({ kind: "passthrough", ip: "192.0.2.1", port: 443 });
    expect(refusal(strict, "10.0.1.5", "192.0.2.1", 443)).toBe("REGISTRY_ONLY");
  });
});

describe("CONNECT headers", () => {
  test("baggage names the source workload", () => {
    const sleep = ctx.store.workloadByIp("10.0.1.5")!;
    expect(baggage(sleep)).toBe("k8s.namespace.name=default,k8s.deployment.name=sleep-dep,service.name=sleep,service.version=v2");
  });

  test("traceparent is a fresh W3C trace context", () => {
    const a = traceparent();
    expect(a).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    expect(traceparent()).not.toBe(a);
  });

  test("traceparents stay distinct and well-formed across refills of their random pool", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const t = traceparent();
      expect(t).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(t).not.toMatch(/^00-0{32}-/);
      seen.add(t.slice(3, 35));
      seen.add(t.slice(36, 52));
    }
    expect(seen.size).toBe(2000);
  });
});
