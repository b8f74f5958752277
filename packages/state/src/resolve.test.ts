import { describe, expect, it } from "vitest";
import { pickEndpoint, targetPort } from "./resolve.js";
import { createMeshStore } from "./store.js";
import type { Service, Workload } from "./types.js";
import { workload } from "./test-support/workload.js";

const svc: Service = {
  name: "echo", namespace: "default", hostname: "echo.default.svc.cluster.local",
  vips: [{ network: "", address: "10.96.0.20" }], ports: new Map([[80, 8080], [81, 0]]), subjectAltNames: [],
};
const key = "default/echo.default.svc.cluster.local";
const member = (name: string, ip: string, extra: Partial<Workload> = {}, ports: [number, number][] = []) =>
  workload(name, [ip], { services: new Map([[key, new Map(ports)]]), ...extra });

describe("targetPort", () => {
  it("prefers the workload's map, then the service's; 0 means the service port", () => {
    expect(targetPort(svc, member("a", "10.0.0.1"), 80)).toBe(8080);
    expect(targetPort(svc, member("a", "10.0.0.1", {}, [[80, 9090]]), 80)).toBe(9090);
    expect(targetPort(svc, member("a", "10.0.0.1"), 81)).toBe(81);
    expect(targetPort(svc, member("a", "10.0.0.1", {}, [[80, 0]]), 80)).toBe(80);
    expect(targetPort(svc, member("a", "10.0.0.1", {}, [[90, 9000]]), 90)).toBe(9000);
    expect(targetPort(svc, member("a", "10.0.0.1"), 443)).toBeUndefined();
  });
});

/** A deterministic evenly spread "random" sequence. */
function sequence(n: number): () => number {
  let i = 0;
  return () => ((i++ % n) + 0.5) / n;
}

describe("pickEndpoint", () => {
  it("weights by capacity among healthy endpoints serving the port", () => {
    const store = createMeshStore({
      workloads: [
        member("one", "10.0.0.1", { capacity: 1 }),
        member("three", "10.0.0.2", { capacity: 3 }),
        member("sick", "10.0.0.3", { status: "Unhealthy", capacity: 100 }),
        workload("outsider", ["10.0.0.4"], { capacity: 100 }),
      ],
      services: [svc],
      policies: [],
    });
    const counts = new Map<string, number>();
    const random = sequence(1000);
    for (let i = 0; i < 4000; i++) {
      const ep = pickEndpoint(store, svc, 80, random);
      counts.set(ep?.workload.name ?? "none", (counts.get(ep?.workload.name ?? "none") ?? 0) + 1);
      expect(ep?.port).toBe(8080);
    }
    expect(counts.get("one")).toBe(1000);
    expect(counts.get("three")).toBe(3000);
    expect(counts.has("sick")).toBe(false);
  });

  it("skips endpoints that do not serve the port and handles edge randoms", () => {
    const store = createMeshStore({
      workloads: [member("a", "10.0.0.1", {}, [[90, 9000]]), member("b", "10.0.0.2")],
      services: [svc],
      policies: [],
    });
    expect(pickEndpoint(store, svc, 90, () => 0.99)).toEqual({ workload: store.workloadByIp("10.0.0.1"), port: 9000 });
    expect(pickEndpoint(store, svc, 80, () => 0)?.workload.name).toBe("a");
    expect(pickEndpoint(store, svc, 80, () => 1)?.workload.name).toBe("b");
    expect(pickEndpoint(store, svc, 443)).toBeUndefined();
  });

  it("returns undefined when no endpoint is healthy", () => {
    const store = createMeshStore({ workloads: [member("a", "10.0.0.1", { status: "Unhealthy" })], services: [svc], policies: [] });
    expect(pickEndpoint(store, svc, 80)).toBeUndefined();
  });
});
