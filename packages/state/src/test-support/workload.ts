import type { Workload } from "../types.js";

/** A complete Workload for unit tests: defaults everywhere, overridden by `extra`. */
export function workload(name: string, ips: string[], extra: Partial<Workload> = {}): Workload {
  return {
    uid: `c//v1/Pod/default/${name}`, name, namespace: "default", serviceAccount: "default", workloadIps: ips,
    protocol: "HBONE", node: "node-a", trustDomain: "cluster.local", clusterId: "c", canonicalName: name,
    canonicalRevision: "latest", workloadType: "pod", workloadName: name, status: "Healthy", labels: new Map(),
    capacity: 1, services: new Map(), ...extra,
  };
}
