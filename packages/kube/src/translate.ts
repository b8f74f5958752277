/**
 * The Kubernetes objects discovery holds, as the mesh model: exactly what the local file
 * produces, so nothing downstream knows where it came from. The same objects give the same
 * snapshot (sorted, so /config_dump does not reorder). A translator remembers what did not
 * change: each pod's workload (its object, namespace, selection and membership the same),
 * each service's model, each slice's members; a rebuild after a few changes allocates for
 * those few.
 */
import type { MeshSnapshot, PortMap, Service, Workload } from "@zt/state";
import type { ClusterNames, KubeObjects, KubeService, Namespace, Pod, TranslationProblem } from "./objects.js";
import { enrollment, podWorkload } from "./pods.js";
import { translatePolicies } from "./policies.js";
import { kubeService, members, selects, type Member, type SliceMembers } from "./services.js";

export interface Translation {
  readonly snapshot: MeshSnapshot;
  readonly problems: readonly TranslationProblem[];
}

export type Translator = (objects: KubeObjects) => Translation;

interface Cached {
  readonly pod: Pod;
  readonly ns: Namespace | undefined;
  readonly membership: string;
  readonly workload: Workload | undefined;
}

/** One translation, with nothing remembered. */
export function translate(objects: KubeObjects, names: ClusterNames): Translation {
  return createTranslator(names)(objects);
}

export function createTranslator(names: ClusterNames): Translator {
  let cache = new Map<string, Cached>();
  let services = new Map<string, ServiceEntry>();
  let slices = new Map<string, SliceMembers>();
  return (objects) => {
    const next = new Map<string, Cached>();
    const nextServices = new Map<string, ServiceEntry>();
    const nextSlices = new Map<string, SliceMembers>();
    const caches: Caches = {
      service: (key, kube) => {
        const hit = services.get(key);
        const c = hit && hit.kube === kube ? hit : { kube, model: kubeService(kube, names) };
        nextServices.set(key, c);
        return c.model ? (c as ServiceEntry & { model: Service }) : undefined;
      },
      slices: { previous: slices, next: nextSlices },
    };
    const t = translateWith(objects, names, caches, (key, pod, ns, selected, membership, build) => {
      const sig = `${selected}|${signature(membership)}`;
      const hit = cache.get(key);
      const c = hit && hit.pod === pod && hit.ns === ns && hit.membership === sig ? hit : { pod, ns, membership: sig, workload: build() };
      next.set(key, c);
      return c.workload;
    });
    cache = next;
    services = nextServices;
    slices = nextSlices;
    return t;
  };
}

/** A service's model (none for ExternalName), the same object while the service is: the slice cache compares it. */
interface ServiceEntry {
  readonly kube: KubeService;
  readonly model: Service | undefined;
}

/** What a translator keeps between calls besides the pods: each service's entry, each slice's members. */
interface Caches {
  service(key: string, kube: KubeService): { kube: KubeService; model: Service } | undefined;
  readonly slices: { readonly previous: ReadonlyMap<string, SliceMembers>; readonly next: Map<string, SliceMembers> };
}

/** The workload of one pod; `selected` and `membership` are what it depends on besides the pod and its namespace. */
type PodWorkloadOf = (key: string, pod: Pod, ns: Namespace | undefined, selected: boolean, membership: ReadonlyMap<string, PortMap>, build: () => Workload | undefined) => Workload | undefined;

function signature(m: ReadonlyMap<string, PortMap>): string {
  let s = "";
  for (const [k, ports] of m) {
    s += `${k}:`;
    for (const [a, b] of ports) s += `${a}=${b},`;
    s += ";";
  }
  return s;
}

function translateWith(objects: KubeObjects, names: ClusterNames, caches: Caches, workloadOf: PodWorkloadOf): Translation {
  const problems: TranslationProblem[] = [];
  const services = new Map<string, { kube: KubeService; model: Service }>();
  for (const [key, kube] of objects.services) {
    const entry = caches.service(key, kube);
    if (entry) services.set(key, entry);
  }

  // Membership from the slices: per pod, and per bare address (no pod behind it, or one on the host's network).
  const byPod = new Map<string, Map<string, PortMap>>();
  const byAddress = new Map<string, Member[]>();
  for (const m of members(services, objects.endpointSlices, objects.pods, caches.slices)) {
    const pod = m.pod ? objects.pods.get(m.pod) : undefined;
    if (pod && !pod.spec?.hostNetwork) addMembership(byPod, m.pod!, m);
    else {
      const key = `${m.service.namespace}/${m.address}`;
      const list = byAddress.get(key);
      if (list) list.push(m);
      else byAddress.set(key, [m]);
    }
  }

  const workloads: Workload[] = [];
  const none = new Map<string, PortMap>();
  // Services by namespace: a pod outside the mesh is checked against its own namespace's only.
  const servicesIn = new Map<string, KubeService[]>();
  for (const svc of objects.services.values()) {
    const ns = svc.metadata?.namespace ?? "default";
    const list = servicesIn.get(ns);
    if (list) list.push(svc);
    else servicesIn.set(ns, [svc]);
  }
  for (const [key, pod] of objects.pods) {
    const ns = objects.namespaces.get(pod.metadata?.namespace ?? "default");
    const membership = byPod.get(key) ?? none;
    const e = enrollment(pod, ns);
    // A pod outside the mesh is a workload only while some service selects it.
    const selected = e.kind === "outside" && membership.size === 0 ? selectedByAny(servicesIn.get(pod.metadata?.namespace ?? "default") ?? [], pod) : true;
    const w = workloadOf(key, pod, ns, selected, membership, () => {
      if (e.kind === "never" || !selected) return undefined;
      return podWorkload(pod, e.kind === "ambient" ? "HBONE" : "TCP", names, membership === none ? new Map() : membership);
    });
    if (w) workloads.push(w);
  }
  for (const [key, ms] of byAddress) workloads.push(addressWorkload(key, ms, names));

  return {
    snapshot: {
      workloads: uniqueIps(workloads, objects.pods, problems).sort((a, b) => cmp(a.uid, b.uid)),
      services: [...services.values()].map((s) => s.model).sort((a, b) => cmp(`${a.namespace}/${a.hostname}`, `${b.namespace}/${b.hostname}`)),
      policies: translatePolicies(objects.authorizationPolicies, names, problems),
    },
    problems,
  };
}

function addMembership(byPod: Map<string, Map<string, PortMap>>, pod: string, m: Member): void {
  const svcs = byPod.get(pod) ?? new Map<string, PortMap>();
  byPod.set(pod, svcs);
  const had = svcs.get(m.serviceKey);
  svcs.set(m.serviceKey, had && had.size > 0 ? new Map([...had, ...m.ports]) : m.ports);
}

function selectedByAny(services: readonly KubeService[], pod: Pod): boolean {
  for (const s of services) if (s.spec?.type !== "ExternalName" && selects(s, pod)) return true;
  return false;
}

/** An endpoint that is no pod of the mesh (the API server's address, a hand-written slice, a host-network pod): plain TCP. */
function addressWorkload(key: string, ms: readonly Member[], names: ClusterNames): Workload {
  const [namespace, address] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
  const services = new Map<string, PortMap>();
  for (const m of ms) services.set(m.serviceKey, new Map([...(services.get(m.serviceKey) ?? []), ...m.ports]));
  const first = ms[0]!;
  const name = first.targetName ?? address;
  return {
    uid: `${names.clusterId}//Endpoint/${namespace}/${address}`,
    name,
    namespace,
    serviceAccount: "",
    workloadIps: [address],
    protocol: "TCP",
    node: first.nodeName ?? "",
    trustDomain: names.trustDomain,
    clusterId: names.clusterId,
    canonicalName: first.service.name,
    canonicalRevision: "latest",
    workloadType: "endpoint",
    workloadName: name,
    status: "Healthy",
    labels: new Map(),
    capacity: 1,
    services,
  };
}

/**
 * One workload per IP. A pod IP can briefly belong to two pods (a finished one and its
 * successor); the mesh pod wins over a plain one, a pod over a bare address, then the newer pod.
 */
function uniqueIps(workloads: Workload[], pods: ReadonlyMap<string, Pod>, problems: TranslationProblem[]): Workload[] {
  // Almost always every IP has one owner: only a contested IP needs the ranking.
  const claims = new Map<string, number>();
  for (const w of workloads) for (const ip of w.workloadIps) claims.set(ip, (claims.get(ip) ?? 0) + 1);
  const contested = workloads.filter((w) => w.workloadIps.some((ip) => claims.get(ip)! > 1));
  if (contested.length === 0) return workloads;
  const rank = new Map<Workload, [number, number]>();
  for (const w of contested) {
    const pod = pods.get(`${w.namespace}/${w.name}`);
    const created = pod?.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).getTime() : 0;
    rank.set(w, [w.protocol === "HBONE" ? 2 : w.workloadType === "endpoint" ? 0 : 1, created]);
  }
  const owner = new Map<string, Workload>();
  const ordered = [...contested].sort((a, b) => {
    const [ra, rb] = [rank.get(a)!, rank.get(b)!];
    return rb[0] - ra[0] || rb[1] - ra[1] || cmp(a.uid, b.uid);
  });
  const kept: Workload[] = workloads.filter((w) => !rank.has(w));
  for (const w of kept) for (const ip of w.workloadIps) owner.set(ip, w);
  for (const w of ordered) {
    const taken = w.workloadIps.find((ip) => owner.has(ip));
    if (taken) {
      problems.push({ kind: w.workloadType === "endpoint" ? "EndpointSlice" : "Pod", namespace: w.namespace, name: w.name, reason: `its IP ${taken} is already ${owner.get(taken)!.uid}'s; left out` });
      continue;
    }
    for (const ip of w.workloadIps) owner.set(ip, w);
    kept.push(w);
  }
  return kept;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
