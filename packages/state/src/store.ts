/** The current mesh state with the indexes the data path looks things up in. */
import { normalizeIp } from "./ip.js";
import { type MeshSnapshot, type Policy, type Service, serviceKey, type Workload } from "./types.js";

export type MeshChangeListener = (snapshot: MeshSnapshot, version: number) => void;

export interface MeshStore {
  /** 0 for an empty store created without a snapshot, 1 with one; +1 on every replace. */
  readonly version: number;
  snapshot(): MeshSnapshot;
  /** Swaps in a new snapshot, rebuilds the indexes, then calls the listeners (all of them, even if one throws). */
  replace(s: MeshSnapshot): void;
  /** Returns an unsubscribe function. */
  onChange(listener: MeshChangeListener): () => void;
  /** Any textual form of the IP (IPv4-mapped IPv6 included). */
  workloadByIp(ip: string): Workload | undefined;
  workloadByUid(uid: string): Workload | undefined;
  /** By VIP address (any textual form); the VIP's network is not considered. */
  serviceByVip(ip: string): Service | undefined;
  serviceByHostname(hostname: string): Service | undefined;
  /** By serviceKey(): "<namespace>/<hostname>". */
  serviceByKey(key: string): Service | undefined;
  /** Workloads whose `services` map has serviceKey(service), in snapshot order (healthy or not). */
  endpoints(service: Pick<Service, "namespace" | "hostname">): readonly Workload[];
  workloadsOnNode(node: string): readonly Workload[];
  /** Global policies, Namespace policies of its namespace, and matching WorkloadSelector policies of its namespace, in snapshot order. */
  policiesFor(workload: Workload): readonly Policy[];
}

export const EMPTY_SNAPSHOT: MeshSnapshot = Object.freeze({ workloads: [], services: [], policies: [] });

interface Indexes {
  readonly byIp: Map<string, Workload>;
  readonly byUid: Map<string, Workload>;
  readonly byVip: Map<string, Service>;
  readonly byHostname: Map<string, Service>;
  readonly byKey: Map<string, Service>;
  readonly endpoints: Map<string, Workload[]>;
  readonly byNode: Map<string, Workload[]>;
  /** Candidate policies per namespace (Global + that namespace's), snapshot order. */
  readonly policiesByNs: Map<string, Policy[]>;
  readonly globalPolicies: readonly Policy[];
  readonly policyCache: WeakMap<Workload, readonly Policy[]>;
}

/** The index key of an IP: normalizeIp, which returns canonical IPv4 as it is without parsing (the common case). */
function ipKey(ip: string): string {
  return normalizeIp(ip) ?? ip;
}

function setFirst<K, V>(m: Map<K, V>, k: K, v: V): void {
  if (!m.has(k)) m.set(k, v);
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

function buildIndexes(s: MeshSnapshot): Indexes {
  const ix: Indexes = {
    byIp: new Map(),
    byUid: new Map(),
    byVip: new Map(),
    byHostname: new Map(),
    byKey: new Map(),
    endpoints: new Map(),
    byNode: new Map(),
    policiesByNs: new Map(),
    globalPolicies: s.policies.filter((p) => p.scope === "Global"),
    policyCache: new WeakMap(),
  };
  for (const w of s.workloads) {
    for (const ip of w.workloadIps) setFirst(ix.byIp, ipKey(ip), w);
    setFirst(ix.byUid, w.uid, w);
    for (const key of w.services.keys()) push(ix.endpoints, key, w);
    push(ix.byNode, w.node, w);
  }
  for (const svc of s.services) {
    for (const vip of svc.vips) setFirst(ix.byVip, ipKey(vip.address), svc);
    setFirst(ix.byHostname, svc.hostname, svc);
    setFirst(ix.byKey, serviceKey(svc), svc);
  }
  const namespaces = new Set(s.policies.filter((p) => p.scope !== "Global").map((p) => p.namespace));
  for (const ns of namespaces) {
    ix.policiesByNs.set(ns, s.policies.filter((p) => p.scope === "Global" || p.namespace === ns));
  }
  return ix;
}

function selectorMatches(selector: ReadonlyMap<string, string>, labels: ReadonlyMap<string, string>): boolean {
  for (const [k, v] of selector) if (labels.get(k) !== v) return false;
  return true;
}

/** Exact lookup first; the IP is normalized only when that misses. */
function byAnyIp<V>(m: ReadonlyMap<string, V>, ip: string): V | undefined {
  const hit = m.get(ip);
  if (hit !== undefined) return hit;
  const n = normalizeIp(ip);
  return n === undefined || n === ip ? undefined : m.get(n);
}

export function createMeshStore(initial?: MeshSnapshot): MeshStore {
  let current = initial ?? EMPTY_SNAPSHOT;
  let version = initial ? 1 : 0;
  let ix = buildIndexes(current);
  const listeners = new Set<MeshChangeListener>();
  const none: readonly never[] = Object.freeze([]);

  return {
    get version(): number {
      return version;
    },
    snapshot: () => current,
    replace(s: MeshSnapshot): void {
      ix = buildIndexes(s);
      current = s;
      version++;
      const errors: unknown[] = [];
      for (const l of [...listeners]) {
        try {
          l(s, version);
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, "mesh store change listeners failed");
    },
    onChange(listener: MeshChangeListener): () => void {
      const wrapped: MeshChangeListener = (s, v) => listener(s, v);
      listeners.add(wrapped);
      return () => {
        listeners.delete(wrapped);
      };
    },
    workloadByIp: (ip) => byAnyIp(ix.byIp, ip),
    workloadByUid: (uid) => ix.byUid.get(uid),
    serviceByVip: (ip) => byAnyIp(ix.byVip, ip),
    serviceByHostname: (hostname) => ix.byHostname.get(hostname) ?? ix.byHostname.get(hostname.toLowerCase()),
    serviceByKey: (key) => ix.byKey.get(key),
    endpoints: (service) => ix.endpoints.get(serviceKey(service)) ?? none,
    workloadsOnNode: (node) => ix.byNode.get(node) ?? none,
    policiesFor(workload: Workload): readonly Policy[] {
      const cache = ix.policyCache;
      const hit = cache.get(workload);
      if (hit) return hit;
      const candidates = ix.policiesByNs.get(workload.namespace) ?? ix.globalPolicies;
      // A Global policy may carry a selector too (Istio: a root-namespace policy with a selector applies mesh-wide to the workloads it selects).
      const result = candidates.filter((p) => (p.scope !== "WorkloadSelector" && p.selector.size === 0) || selectorMatches(p.selector, workload.labels));
      cache.set(workload, result);
      return result;
    },
  };
}
