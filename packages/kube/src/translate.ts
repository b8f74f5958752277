/**
 * The Kubernetes objects discovery holds, as the mesh model: exactly what the local file
 * produces, so nothing downstream knows where it came from.
 *
 * A translator follows changes: told which objects changed, it redoes only what depends
 * on them and answers with a delta (what to add, change and remove), so a change costs
 * the same in a mesh of ten pods or ten thousand. What depends on what:
 * - a pod's workload: the pod, its namespace, the services whose endpoints name it (and,
 *   for a pod outside the mesh, whether a service of its namespace selects it);
 * - a slice's endpoints: the slice, its service, the pods it names;
 * - a service's endpoints: all its slices (ready ones, else the terminating ones);
 * - who owns an IP two workloads claim: every claimant.
 * The first update (or one with `full`) translates everything; the same objects give the
 * same result whatever order they came in (sorted).
 */
import { serviceKey, type MeshDelta, type MeshSnapshot, type Policy, type PortMap, type Service, type Workload } from "@zt/state";
import type { AuthorizationPolicy, ClusterNames, KubeObjects, KubeService, Namespace, Pod, TranslationProblem } from "./objects.js";
import { enrollment, podWorkload } from "./pods.js";
import { translatePolicies } from "./policies.js";
import { kubeService, selects, SERVICE_NAME_LABEL, sliceMembers, type Member, type SliceMembers } from "./services.js";

type Kind = keyof KubeObjects;
/** The keys ("<namespace>/<name>", a namespace's name) of the objects changed (added, modified or deleted) per kind. */
export type Changes = { readonly [K in Kind]?: Iterable<string> };

export interface TranslationUpdate {
  /** Everything, not a change: replace what was there with it. */
  readonly full: boolean;
  readonly delta: MeshDelta;
  /** Every object that cannot be used as written, now (not only the changed ones). */
  readonly problems: readonly TranslationProblem[];
}

export interface Translator {
  /** After `objects` changed where `changes` says (everything, the first time or with `full`). */
  update(objects: KubeObjects, changes: Changes | "full"): TranslationUpdate;
}

export interface Translation {
  readonly snapshot: MeshSnapshot;
  readonly problems: readonly TranslationProblem[];
}

/** One translation of everything, as a snapshot. */
export function translate(objects: KubeObjects, names: ClusterNames): Translation {
  const { delta, problems } = createTranslator(names).update(objects, "full");
  return { snapshot: { workloads: delta.workloads ?? [], services: delta.services ?? [], policies: delta.policies ?? [] }, problems };
}

interface PodState {
  readonly pod: Pod;
  readonly ns: Namespace | undefined;
  readonly sig: string;
  readonly outside: boolean;
  readonly workload: Workload | undefined;
}

const POD = "p:";
const ADDRESS = "a:";
const NONE: ReadonlyMap<string, PortMap> = new Map();

export function createTranslator(names: ClusterNames): Translator {
  let t = new State(names);
  let first = true;
  return {
    update(objects, changes) {
      const full = first || changes === "full";
      first = false;
      if (full) t = new State(names);
      return t.update(objects, full ? everything(objects) : changes, full);
    },
  };
}

function everything(o: KubeObjects): Changes {
  return { namespaces: o.namespaces.keys(), pods: o.pods.keys(), services: o.services.keys(), endpointSlices: o.endpointSlices.keys(), authorizationPolicies: o.authorizationPolicies.keys() };
}

class State {
  private readonly services = new Map<string, { kube: KubeService; model: Service | undefined }>();
  private readonly servicesInNs = new Links();
  private readonly slices = new Map<string, SliceMembers & { readonly service: string | undefined }>();
  private readonly slicesOfService = new Links();
  private readonly slicesOfPod = new Links();
  /** Per service (by "<namespace>/<name>"): its endpoints, by POD+pod key or ADDRESS+"<namespace>/<address>". */
  private readonly endpoints = new Map<string, Map<string, Member[]>>();
  /** Per POD/ADDRESS key: the services whose endpoints name it. */
  private readonly memberOf = new Links();
  private readonly podsInNs = new Links();
  private readonly outsideInNs = new Links();
  private readonly pods = new Map<string, PodState>();
  /** Every would-be workload (pods' and bare addresses'), by POD/ADDRESS key. */
  private readonly candidates = new Map<string, Workload>();
  private readonly claims = new Links();
  /** The candidates kept (one per IP), as published. */
  private readonly published = new Map<string, Workload>();
  private readonly conflicts = new Map<string, TranslationProblem>();
  private readonly policies = new Map<string, { readonly ap: AuthorizationPolicy; readonly policy: Policy | undefined; readonly problems: readonly TranslationProblem[] }>();
  private problems: readonly TranslationProblem[] = [];

  constructor(private readonly names: ClusterNames) {}

  update(o: KubeObjects, changes: Changes, full: boolean): TranslationUpdate {
    const dirtyPods = new Set<string>();
    const dirtySlices = new Set<string>();
    const dirtyServices = new Set<string>();
    const dirtyAddresses = new Set<string>();
    const services: Service[] = [];
    const removedServices: string[] = [];

    for (const name of changes.namespaces ?? []) for (const p of this.podsInNs.get(name)) dirtyPods.add(p);
    for (const key of changes.services ?? []) {
      const kube = o.services.get(key);
      const had = this.services.get(key);
      if (had?.kube === kube) continue;
      const ns = key.slice(0, key.indexOf("/"));
      const model = kube ? kubeService(kube, this.names) : undefined;
      if (kube) {
        this.services.set(key, { kube, model });
        this.servicesInNs.add(ns, key);
      } else {
        this.services.delete(key);
        this.servicesInNs.remove(ns, key);
      }
      if (model) services.push(model);
      else if (had?.model) removedServices.push(serviceKey(had.model));
      for (const s of this.slicesOfService.get(key)) dirtySlices.add(s);
      dirtyServices.add(key);
      // Whether a service selects a pod outside the mesh decides whether that pod is a workload.
      for (const p of this.outsideInNs.get(ns)) dirtyPods.add(p);
    }
    for (const key of changes.pods ?? []) {
      const ns = key.slice(0, key.indexOf("/"));
      if (o.pods.has(key)) this.podsInNs.add(ns, key);
      else this.podsInNs.remove(ns, key);
      dirtyPods.add(key);
      for (const s of this.slicesOfPod.get(key)) dirtySlices.add(s);
    }
    for (const key of changes.endpointSlices ?? []) dirtySlices.add(key);

    for (const key of dirtySlices) this.redoSlice(key, o, dirtyServices);
    for (const key of dirtyServices) this.redoEndpoints(key, o.pods, dirtyPods, dirtyAddresses);

    const touched = new Set<string>();
    for (const key of dirtyPods) this.redoPod(key, o, touched);
    for (const key of dirtyAddresses) this.setCandidate(ADDRESS + key, this.addressWorkload(key), touched);
    const { workloads, removedWorkloads } = this.resolve(touched, o.pods);

    let policies: Policy[] | undefined;
    const policyChanges = [...(changes.authorizationPolicies ?? [])];
    if (policyChanges.length > 0 || full) policies = this.redoPolicies(o.authorizationPolicies, policyChanges);
    if (touched.size > 0 || policies) this.problems = [...[...this.conflicts.entries()].sort(byKey).map((e) => e[1]), ...[...this.policies.entries()].sort(byKey).flatMap((e) => e[1].problems)];

    const delta: MeshDelta = full
      ? { workloads: workloads.sort((a, b) => cmp(a.uid, b.uid)), services: services.sort((a, b) => cmp(serviceKey(a), serviceKey(b))), policies: policies ?? [] }
      : {
          ...(workloads.length ? { workloads } : {}),
          ...(removedWorkloads.length ? { removedWorkloads } : {}),
          ...(services.length ? { services } : {}),
          ...(removedServices.length ? { removedServices } : {}),
          ...(policies ? { policies } : {}),
        };
    return { full, delta, problems: this.problems };
  }

  private redoSlice(key: string, o: KubeObjects, dirtyServices: Set<string>): void {
    const had = this.slices.get(key);
    if (had) {
      if (had.service) {
        this.slicesOfService.remove(had.service, key);
        dirtyServices.add(had.service);
      }
      for (const p of had.pods) this.slicesOfPod.remove(p, key);
      this.slices.delete(key);
    }
    const slice = o.endpointSlices.get(key);
    if (!slice) return;
    const svcName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    const service = svcName ? `${slice.metadata?.namespace ?? "default"}/${svcName}` : undefined;
    const svc = service ? this.services.get(service) : undefined;
    const m = sliceMembers(key, slice, svc?.model ? (svc as { kube: KubeService; model: Service }) : undefined, o.pods);
    this.slices.set(key, { ...m, service });
    if (service) {
      this.slicesOfService.add(service, key);
      dirtyServices.add(service);
    }
    for (const p of m.pods) this.slicesOfPod.add(p, key);
  }

  /** A service's endpoints from its slices; the pods and addresses they name (before and after) are redone. */
  private redoEndpoints(service: string, pods: ReadonlyMap<string, Pod>, dirtyPods: Set<string>, dirtyAddresses: Set<string>): void {
    const ready: Member[] = [];
    const fallback: Member[] = [];
    for (const s of [...this.slicesOfService.get(service)].sort()) {
      const m = this.slices.get(s)!;
      ready.push(...m.ready);
      fallback.push(...m.fallback);
    }
    const next = new Map<string, Member[]>();
    for (const m of ready.length > 0 ? ready : fallback) {
      // A pod of the mesh, or a bare address (no pod behind it, or one on the host's network).
      const pod = m.pod ? pods.get(m.pod) : undefined;
      const key = pod && !pod.spec?.hostNetwork ? POD + m.pod : `${ADDRESS}${m.service.namespace}/${m.address}`;
      const list = next.get(key);
      if (list) list.push(m);
      else next.set(key, [m]);
    }
    const had = this.endpoints.get(service);
    for (const key of new Set([...(had?.keys() ?? []), ...next.keys()])) {
      if (next.has(key)) this.memberOf.add(key, service);
      else this.memberOf.remove(key, service);
      if (key.startsWith(POD)) dirtyPods.add(key.slice(POD.length));
      else dirtyAddresses.add(key.slice(ADDRESS.length));
    }
    if (next.size > 0) this.endpoints.set(service, next);
    else this.endpoints.delete(service);
  }

  private redoPod(key: string, o: KubeObjects, touched: Set<string>): void {
    const pod = o.pods.get(key);
    const ns = key.slice(0, key.indexOf("/"));
    const had = this.pods.get(key);
    if (!pod) {
      this.pods.delete(key);
      this.outsideInNs.remove(ns, key);
      this.setCandidate(POD + key, undefined, touched);
      return;
    }
    const namespace = o.namespaces.get(ns);
    const membership = this.membership(POD + key);
    const e = enrollment(pod, namespace);
    // A pod outside the mesh is a workload only while some service selects it.
    const selected = e.kind === "outside" && membership.size === 0 ? this.selectedByAny(ns, pod) : true;
    const sig = `${selected}|${signature(membership)}`;
    const workload =
      had && had.pod === pod && had.ns === namespace && had.sig === sig
        ? had.workload
        : e.kind === "never" || !selected
          ? undefined
          : podWorkload(pod, e.kind === "ambient" ? "HBONE" : "TCP", this.names, membership === NONE ? new Map() : membership);
    this.pods.set(key, { pod, ns: namespace, sig, outside: e.kind === "outside", workload });
    if (e.kind === "outside") this.outsideInNs.add(ns, key);
    else this.outsideInNs.remove(ns, key);
    this.setCandidate(POD + key, workload, touched);
  }

  /** Per service (by the model's key) the target ports of this member's endpoints, merged; NONE when it serves no service. */
  private membership(member: string): ReadonlyMap<string, PortMap> {
    const n = this.memberOf.size(member);
    if (n === 0) return NONE;
    const out = new Map<string, PortMap>();
    for (const service of n === 1 ? this.memberOf.get(member) : [...this.memberOf.get(member)].sort()) {
      for (const m of this.endpoints.get(service)?.get(member) ?? []) {
        const had = out.get(m.serviceKey);
        out.set(m.serviceKey, had && had.size > 0 ? new Map([...had, ...m.ports]) : m.ports);
      }
    }
    return out;
  }

  private selectedByAny(ns: string, pod: Pod): boolean {
    for (const key of this.servicesInNs.get(ns)) {
      const s = this.services.get(key)!.kube;
      if (s.spec?.type !== "ExternalName" && selects(s, pod)) return true;
    }
    return false;
  }

  /** An endpoint that is no pod of the mesh (the API server's address, a hand-written slice, a host-network pod): plain TCP. */
  private addressWorkload(key: string): Workload | undefined {
    const ms: Member[] = [];
    for (const service of [...this.memberOf.get(ADDRESS + key)].sort()) ms.push(...(this.endpoints.get(service)?.get(ADDRESS + key) ?? []));
    const first = ms[0];
    if (!first) return undefined;
    const [namespace, address] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
    const services = new Map<string, PortMap>();
    for (const m of ms) services.set(m.serviceKey, new Map([...(services.get(m.serviceKey) ?? []), ...m.ports]));
    const name = first.targetName ?? address;
    return {
      uid: `${this.names.clusterId}//Endpoint/${namespace}/${address}`,
      name,
      namespace,
      serviceAccount: "",
      workloadIps: [address],
      protocol: "TCP",
      node: first.nodeName ?? "",
      trustDomain: this.names.trustDomain,
      clusterId: this.names.clusterId,
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

  private setCandidate(key: string, w: Workload | undefined, touched: Set<string>): void {
    const had = this.candidates.get(key);
    if (had === w) return;
    touched.add(key);
    for (const ip of had?.workloadIps ?? []) {
      this.claims.remove(ip, key);
      // Whoever else claims an IP this one gave up may own it now.
      for (const other of this.claims.get(ip)) touched.add(other);
    }
    if (w) {
      this.candidates.set(key, w);
      for (const ip of w.workloadIps) this.claims.add(ip, key);
    } else this.candidates.delete(key);
  }

  /**
   * One workload per IP. A pod IP can briefly belong to two pods (a finished one and its
   * successor); the mesh pod wins over a plain one, a pod over a bare address, then the
   * newer pod. Only the candidates that changed, and whoever shares an IP with them, are
   * looked at again.
   */
  private resolve(touched: ReadonlySet<string>, pods: ReadonlyMap<string, Pod>): { workloads: Workload[]; removedWorkloads: string[] } {
    // Everything connected to a touched candidate through contested IPs.
    const group = new Set<string>();
    const queue = [...touched];
    while (queue.length > 0) {
      const key = queue.pop()!;
      if (group.has(key)) continue;
      group.add(key);
      for (const ip of this.candidates.get(key)?.workloadIps ?? []) {
        if (this.claims.size(ip) > 1) for (const c of this.claims.get(ip)) if (!group.has(c)) queue.push(c);
      }
    }
    const contested = [...group].filter((k) => this.candidates.get(k)?.workloadIps.some((ip) => this.claims.size(ip) > 1));
    const isContested = new Set(contested);
    const kept = new Set<string>();
    for (const k of group) if (this.candidates.has(k) && !isContested.has(k)) kept.add(k);
    if (contested.length > 0) {
      const rank = (k: string): [number, number] => {
        const w = this.candidates.get(k)!;
        const pod = k.startsWith(POD) ? pods.get(k.slice(POD.length)) : undefined;
        const created = pod?.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).getTime() : 0;
        return [w.protocol === "HBONE" ? 2 : w.workloadType === "endpoint" ? 0 : 1, created];
      };
      const ranks = new Map(contested.map((k) => [k, rank(k)]));
      contested.sort((a, b) => {
        const [ra, rb] = [ranks.get(a)!, ranks.get(b)!];
        return rb[0] - ra[0] || rb[1] - ra[1] || cmp(this.candidates.get(a)!.uid, this.candidates.get(b)!.uid);
      });
      const owner = new Map<string, Workload>();
      for (const k of contested) {
        const w = this.candidates.get(k)!;
        const taken = w.workloadIps.find((ip) => owner.has(ip));
        if (taken) {
          this.conflicts.set(k, { kind: w.workloadType === "endpoint" ? "EndpointSlice" : "Pod", namespace: w.namespace, name: w.name, reason: `its IP ${taken} is already ${owner.get(taken)!.uid}'s; left out` });
          continue;
        }
        for (const ip of w.workloadIps) owner.set(ip, w);
        kept.add(k);
      }
    }
    const workloads: Workload[] = [];
    const removedWorkloads: string[] = [];
    for (const k of group) {
      if (!isContested.has(k) || kept.has(k)) this.conflicts.delete(k);
      const now = kept.has(k) ? this.candidates.get(k) : undefined;
      const had = this.published.get(k);
      if (now === had) continue;
      if (now) {
        this.published.set(k, now);
        workloads.push(now);
      } else {
        this.published.delete(k);
        removedWorkloads.push(had!.uid);
      }
    }
    return { workloads, removedWorkloads };
  }

  private redoPolicies(objects: ReadonlyMap<string, AuthorizationPolicy>, changed: readonly string[]): Policy[] {
    for (const key of changed) {
      const ap = objects.get(key);
      if (!ap) {
        this.policies.delete(key);
        continue;
      }
      if (this.policies.get(key)?.ap === ap) continue;
      // One object at a time: translatePolicies never lets one take the others down.
      const problems: TranslationProblem[] = [];
      const policy = translatePolicies(new Map([[key, ap]]), this.names, problems)[0];
      this.policies.set(key, { ap, policy, problems });
    }
    const out: Policy[] = [];
    for (const e of this.policies.values()) if (e.policy) out.push(e.policy);
    return out.sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  }
}

function signature(m: ReadonlyMap<string, PortMap>): string {
  let s = "";
  for (const [k, ports] of m) {
    s += `${k}:`;
    for (const [a, b] of ports) s += `${a}=${b},`;
    s += ";";
  }
  return s;
}

/** Key -> a set of strings, most of them of one: that one is kept as itself, a Set only from the second. */
class Links {
  private readonly m = new Map<string, string | Set<string>>();
  add(key: string, v: string): void {
    const had = this.m.get(key);
    if (had === undefined) this.m.set(key, v);
    else if (typeof had === "string") {
      if (had !== v) this.m.set(key, new Set([had, v]));
    } else had.add(v);
  }
  remove(key: string, v: string): void {
    const had = this.m.get(key);
    if (had === undefined) return;
    if (typeof had === "string") {
      if (had === v) this.m.delete(key);
      return;
    }
    had.delete(v);
    if (had.size === 1) this.m.set(key, had.values().next().value!);
  }
  get(key: string): Iterable<string> {
    const had = this.m.get(key);
    return had === undefined ? NO_LINKS : typeof had === "string" ? [had] : [...had];
  }
  size(key: string): number {
    const had = this.m.get(key);
    return had === undefined ? 0 : typeof had === "string" ? 1 : had.size;
  }
}

const NO_LINKS: readonly string[] = [];

const byKey = (a: [string, unknown], b: [string, unknown]): number => cmp(a[0], b[0]);

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
