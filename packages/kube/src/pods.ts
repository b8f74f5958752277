/** Pods as workloads: who is enrolled, and the fields Istio's ztunnel gets for each. */
import { normalizeIp, type PortMap, type Workload } from "@zt/state";
import type { ClusterNames, Namespace, Pod } from "./objects.js";

export const DATAPLANE_MODE = "istio.io/dataplane-mode";

/** Why a pod is in the mesh (HBONE), outside it (TCP, when a service selects it), or no workload at all. */
export type Enrollment = { readonly kind: "ambient" } | { readonly kind: "outside" } | { readonly kind: "never"; readonly why: string };

/** A running pod with an IP, on a node, not on the host's network. */
export function podEligible(pod: Pod): string | undefined {
  if (pod.spec?.hostNetwork) return "it runs on the host's network";
  if (pod.status?.phase !== "Running") return `it is not running (phase ${pod.status?.phase ?? "unknown"})`;
  if (podIps(pod).length === 0) return "it has no IP yet";
  if (!pod.spec?.nodeName) return "it has no node";
  return undefined;
}

/** Istio's rules: the pod's label, else its namespace's, must say ambient; `none` on the pod opts out; a sidecar excludes it. */
export function enrollment(pod: Pod, ns: Namespace | undefined): Enrollment {
  const notEligible = podEligible(pod);
  if (notEligible) return { kind: "never", why: notEligible };
  const own = pod.metadata?.labels?.[DATAPLANE_MODE];
  if (own === "none") return { kind: "outside" };
  if (hasSidecar(pod)) return { kind: "outside" };
  if (own === "ambient" || ns?.metadata?.labels?.[DATAPLANE_MODE] === "ambient") return { kind: "ambient" };
  return { kind: "outside" };
}

function hasSidecar(pod: Pod): boolean {
  if (pod.metadata?.annotations?.["sidecar.istio.io/status"] !== undefined) return true;
  const named = (cs: readonly { readonly name?: string }[] | undefined): boolean => (cs ?? []).some((c) => c.name === "istio-proxy");
  return named(pod.spec?.containers) || named(pod.spec?.initContainers);
}

/** Every pod IP (status.podIPs, else status.podIP), normalized, without duplicates. */
export function podIps(pod: Pod): string[] {
  const raw = pod.status?.podIPs?.length ? pod.status.podIPs.map((p) => p.ip ?? "") : [pod.status?.podIP ?? ""];
  const out: string[] = [];
  for (const r of raw) {
    const ip = r ? normalizeIp(r) : undefined;
    if (ip && !out.includes(ip)) out.push(ip);
  }
  return out;
}

/** canonical-* labels, else app.kubernetes.io/*, else app/version; then the workload's name and "latest". */
function canonical(labels: Readonly<Record<string, string>>, workloadName: string): { name: string; revision: string } {
  const name = labels["service.istio.io/canonical-name"] ?? labels["app.kubernetes.io/name"] ?? labels["app"] ?? workloadName;
  const revision = labels["service.istio.io/canonical-revision"] ?? labels["app.kubernetes.io/version"] ?? labels["version"] ?? "latest";
  return { name, revision };
}

/** The controller that owns the pod: a ReplicaSet's Deployment (its name less the pod-template hash), a StatefulSet, a DaemonSet, a Job. */
export function owner(pod: Pod): { type: string; name: string } {
  const podName = pod.metadata?.name ?? "";
  const ref = (pod.metadata?.ownerReferences ?? []).find((r) => r.controller) ?? pod.metadata?.ownerReferences?.[0];
  if (!ref?.kind || !ref.name) return { type: "pod", name: podName };
  switch (ref.kind) {
    case "ReplicaSet": {
      const hash = pod.metadata?.labels?.["pod-template-hash"];
      if (hash && ref.name.endsWith(`-${hash}`)) return { type: "deployment", name: ref.name.slice(0, -hash.length - 1) };
      return { type: "replicaset", name: ref.name };
    }
    case "StatefulSet":
    case "DaemonSet":
    case "Job":
      return { type: ref.kind.toLowerCase(), name: ref.name };
    default:
      return { type: "pod", name: podName };
  }
}

/** The Ready condition: Healthy only when it is True. */
export function podReady(pod: Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** The workload of an eligible pod; `services` is its membership, from the EndpointSlices. */
export function podWorkload(pod: Pod, protocol: "HBONE" | "TCP", names: ClusterNames, services: ReadonlyMap<string, PortMap>): Workload {
  const namespace = pod.metadata?.namespace ?? "default";
  const name = pod.metadata?.name ?? "";
  const labels = pod.metadata?.labels ?? {};
  const own = owner(pod);
  const c = canonical(labels, own.name);
  return {
    uid: `${names.clusterId}//Pod/${namespace}/${name}`,
    name,
    namespace,
    serviceAccount: pod.spec?.serviceAccountName || "default",
    workloadIps: podIps(pod),
    protocol,
    node: pod.spec?.nodeName ?? "",
    trustDomain: names.trustDomain,
    clusterId: names.clusterId,
    canonicalName: c.name,
    canonicalRevision: c.revision,
    workloadType: own.type,
    workloadName: own.name,
    status: podReady(pod) ? "Healthy" : "Unhealthy",
    labels: new Map(Object.entries(labels)),
    capacity: 1,
    services,
  };
}

/** The number of a named container port of the pod (TCP), if it has one. */
export function containerPort(pod: Pod, name: string): number | undefined {
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === name && (p.protocol ?? "TCP") === "TCP" && p.containerPort) return p.containerPort;
  }
  return undefined;
}
