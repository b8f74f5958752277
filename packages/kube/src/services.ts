/** Services and their endpoints (EndpointSlices) in the mesh model. */
import { normalizeIp, serviceKey, type PortMap, type Service } from "@zt/state";
import type { ClusterNames, EndpointSlice, KubeService, Pod } from "./objects.js";
import { containerPort } from "./pods.js";

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

/** A Service with a cluster IP, or headless (no VIP: its pods are reached directly); none for ExternalName. */
export function kubeService(svc: KubeService, names: ClusterNames): Service | undefined {
  const name = svc.metadata?.name;
  const namespace = svc.metadata?.namespace ?? "default";
  if (!name || svc.spec?.type === "ExternalName") return undefined;
  const ips = svc.spec?.clusterIPs?.length ? svc.spec.clusterIPs : [svc.spec?.clusterIP ?? ""];
  const vips: { network: string; address: string }[] = [];
  for (const raw of ips) {
    const address = raw && raw !== "None" ? normalizeIp(raw) : undefined;
    if (address && !vips.some((v) => v.address === address)) vips.push({ network: "", address });
  }
  // A named target port has no number of its own: each endpoint's map gives it.
  const ports = new Map<number, number>();
  for (const p of tcpPorts(svc)) if (typeof p.targetPort !== "string") ports.set(p.port, p.targetPort ?? p.port);
  return { name, namespace, hostname: `${name}.${namespace}.svc.${names.domainSuffix}`, vips, ports, subjectAltNames: [] };
}

function tcpPorts(svc: KubeService): { name: string; port: number; targetPort: number | string | undefined }[] {
  const out: { name: string; port: number; targetPort: number | string | undefined }[] = [];
  for (const p of svc.spec?.ports ?? []) {
    if ((p.protocol ?? "TCP") !== "TCP" || !p.port) continue;
    out.push({ name: p.name ?? "", port: p.port, targetPort: p.targetPort === "" ? undefined : p.targetPort });
  }
  return out;
}

/** Whether `svc` selects `pod` (same namespace, every selector label present). A service without a selector selects nothing. */
export function selects(svc: KubeService, pod: Pod): boolean {
  const sel = svc.spec?.selector;
  if (!sel || Object.keys(sel).length === 0) return false;
  if ((svc.metadata?.namespace ?? "default") !== (pod.metadata?.namespace ?? "default")) return false;
  const labels = pod.metadata?.labels ?? {};
  return Object.entries(sel).every(([k, v]) => labels[k] === v);
}

/** One endpoint of a service, from its slices: a pod (by key) or a bare address. */
export interface Member {
  readonly service: Service;
  readonly serviceKey: string;
  readonly pod?: string;
  readonly address: string;
  readonly slice: string;
  readonly nodeName: string | undefined;
  readonly targetName: string | undefined;
  /** This endpoint's service port -> target port, for the service's named target ports. */
  readonly ports: PortMap;
}

/** What one slice gives: its ready endpoints, the serving ones that are terminating, and the pods it names. */
export interface SliceMembers {
  readonly ready: readonly Member[];
  readonly fallback: readonly Member[];
  /** "<namespace>/<name>" of every pod the slice names, ready or not: a change to one changes what the slice gives. */
  readonly pods: readonly string[];
}

const NO_PORTS: PortMap = new Map();

/**
 * The endpoints of one slice of `svc` (none when the service is not known). A service's
 * endpoints are its slices' ready ones; when it has none ready, the serving ones that are
 * terminating (as kube-proxy falls back). An endpoint whose pod is not known yet is left
 * out (it converges when the pod arrives), never guessed at.
 */
export function sliceMembers(sliceKey: string, slice: EndpointSlice, svc: { kube: KubeService; model: Service } | undefined, pods: ReadonlyMap<string, Pod>): SliceMembers {
  const namespace = slice.metadata?.namespace ?? "default";
  const refs: string[] = [];
  for (const ep of slice.endpoints ?? []) if (ep.targetRef?.kind === "Pod" && ep.targetRef.name) refs.push(`${ep.targetRef.namespace ?? namespace}/${ep.targetRef.name}`);
  const ready: Member[] = [];
  const fallback: Member[] = [];
  if (!svc) return { ready, fallback, pods: refs };
  const named = tcpPorts(svc.kube).some((p) => typeof p.targetPort === "string");
  const key = serviceKey(svc.model);
  for (const ep of slice.endpoints ?? []) {
    const isReady = ep.conditions?.ready ?? true;
    const serving = ep.conditions?.serving ?? isReady;
    const terminating = ep.conditions?.terminating ?? false;
    if (!isReady && !(serving && terminating)) continue;
    const ref = ep.targetRef;
    const podKey = ref?.kind === "Pod" && ref.name ? `${ref.namespace ?? namespace}/${ref.name}` : undefined;
    const pod = podKey ? pods.get(podKey) : undefined;
    if (podKey && !pod) continue;
    for (const raw of ep.addresses ?? []) {
      const address = normalizeIp(raw);
      if (!address) continue;
      const m: Member = {
        service: svc.model,
        serviceKey: key,
        ...(podKey ? { pod: podKey } : {}),
        address,
        slice: sliceKey,
        nodeName: ep.nodeName,
        targetName: ref?.name,
        ports: named ? namedPorts(svc.kube, slice, pod) : NO_PORTS,
      };
      (isReady ? ready : fallback).push(m);
    }
  }
  return { ready, fallback, pods: refs };
}

/** Named target ports for one endpoint: the pod's container port of that name, else the slice's port named after the service port. */
function namedPorts(svc: KubeService, slice: EndpointSlice, pod: Pod | undefined): PortMap {
  const out = new Map<number, number>();
  for (const p of tcpPorts(svc)) {
    if (typeof p.targetPort !== "string") continue;
    const fromPod = pod ? containerPort(pod, p.targetPort) : undefined;
    const fromSlice = (slice.ports ?? []).find((sp) => (sp.name ?? "") === p.name && (sp.protocol ?? "TCP") === "TCP")?.port;
    const target = fromPod ?? fromSlice;
    if (target) out.set(p.port, target);
  }
  return out;
}
