/** Mesh objects for the xDS server's tests and benchmark: defaults everywhere, overridden by `extra`. */
import type { Policy, Service, Workload } from "@zt/state";

export function podWorkload(i: number, extra: Partial<Workload> = {}): Workload {
  const name = `pod-${i}`;
  const namespace = extra.namespace ?? `ns-${i % 10}`;
  return {
    uid: `Kubernetes//Pod/${namespace}/${name}`,
    name,
    namespace,
    serviceAccount: "default",
    workloadIps: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    protocol: "HBONE",
    node: `node-${i % 20}`,
    trustDomain: "cluster.local",
    clusterId: "Kubernetes",
    canonicalName: `app-${Math.floor(i / 5)}`,
    canonicalRevision: "v1",
    workloadType: "deployment",
    workloadName: `app-${Math.floor(i / 5)}`,
    status: "Healthy",
    labels: new Map([["app", `app-${Math.floor(i / 5)}`]]),
    capacity: 1,
    services: new Map([[`${namespace}/svc-${Math.floor(i / 5)}.${namespace}.svc.cluster.local`, new Map([[80, 8080]])]]),
    ...extra,
  };
}

export function service(i: number, extra: Partial<Service> = {}): Service {
  const namespace = extra.namespace ?? `ns-${(i * 5) % 10}`;
  return {
    name: `svc-${i}`,
    namespace,
    hostname: `svc-${i}.${namespace}.svc.cluster.local`,
    vips: [{ network: "", address: `172.20.${(i >> 8) & 255}.${i & 255}` }],
    ports: new Map([[80, 8080]]),
    subjectAltNames: [],
    ...extra,
  };
}

export function policy(name: string, namespace: string, extra: Partial<Policy> = {}): Policy {
  return {
    name,
    namespace,
    scope: "Namespace",
    action: "Allow",
    dryRun: false,
    selector: new Map(),
    rules: [[[{ namespaces: [namespace] }]]],
    ...extra,
  };
}
