/**
 * The current mesh state with the indexes the data path looks things up in. A source
 * either replaces the whole state (the local file) or applies deltas (the Kubernetes
 * API): a delta costs what it changes, whatever the size of the mesh. Uids, workload
 * IPs, VIPs and hostnames are unique (the sources make them so); were two to collide,
 * the one indexed first keeps the lookup.
 */
import { normalizeIp } from "./ip.js";
import { type MeshDelta, type MeshSnapshot, type Policy, type Service, serviceKey, type Workload } from "./types.js";

/** What a change was: a whole new snapshot, or a delta applied. */
export type MeshChange = { readonly kind: "replace"; readonly snapshot: MeshSnapshot } | { readonly kind: "apply"; readonly delta: MeshDelta };

/** Called after each replace or apply; `store.snapshot()` builds the whole state, so a listener that needs little asks for little. */
export type MeshChangeListener = (version: number, change: MeshChange) => void;

export interface MeshStore {
  /** 0 for an empty store created without a snapshot, 1 with one; +1 on every replace or apply. */
  readonly version: number;
  /** After a replace, that snapshot; after an apply, the state in the order things were first added. */
  snapshot(): MeshSnapshot;
  /** How many workloads, services and policies (without building a snapshot). */
  counts(): { workloads: number; services: number; policies: number };
  /** Swaps in a new snapshot, rebuilds the indexes, then calls the listeners (all of them, even if one throws). */
  replace(s: MeshSnapshot): void;
  /** Applies a change (removals first, then upserts), then calls the listeners as replace does. */
  apply(d: MeshDelta): void;
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
  /** Workloads whose `services` map has serviceKey(service) (healthy or not), in no promised order. */
  endpoints(service: Pick<Service, "namespace" | "hostname">): readonly Workload[];
  workloadsOnNode(node: string): readonly Workload[];
  /** Global policies, Namespace policies of its namespace, and matching WorkloadSelector policies of its namespace, in snapshot order. */
  policiesFor(workload: Workload): readonly Policy[];
}

export const EMPTY_SNAPSHOT: MeshSnapshot = Object.freeze({ workloads: [], services: [], policies: [] });

/** The index key of an IP: normalizeIp, which returns canonical IPv4 as it is without parsing (the common case). */
function ipKey(ip: string): string {
  return normalizeIp(ip) ?? ip;
}

/** Exact lookup first; the IP is normalized only when that misses. */
function byAnyIp<V>(m: ReadonlyMap<string, V>, ip: string): V | undefined {
  const hit = m.get(ip);
  if (hit !== undefined) return hit;
  const n = normalizeIp(ip);
  return n === undefined || n === ip ? undefined : m.get(n);
}

/**
 * What a workload's `authorizationPolicies` names that the store does not hold: an ALLOW
 * policy without rules, so that the workload denies everything (`denied-no-allow-match`)
 * until the policy is known, instead of allowing everything for want of any policy.
 */
function missingPolicy(name: string): Policy {
  const slash = name.indexOf("/");
  return { name: slash < 0 ? name : name.slice(slash + 1), namespace: slash < 0 ? "" : name.slice(0, slash), scope: "WorkloadSelector", action: "Allow", dryRun: false, selector: new Map(), selectedByName: true, missing: true, rules: [] };
}

function selectorMatches(selector: ReadonlyMap<string, string>, labels: ReadonlyMap<string, string>): boolean {
  for (const [k, v] of selector) if (labels.get(k) !== v) return false;
  return true;
}

/** Groups (endpoints of a service, workloads of a node) kept by uid, listed as arrays built once per change of the group. */
class Groups {
  private readonly members = new Map<string, Map<string, Workload>>();
  private readonly lists = new Map<string, readonly Workload[]>();
  add(group: string, w: Workload): void {
    let m = this.members.get(group);
    if (!m) this.members.set(group, (m = new Map()));
    m.set(w.uid, w);
    this.lists.delete(group);
  }
  remove(group: string, w: Workload): void {
    const m = this.members.get(group);
    if (m?.get(w.uid) !== w) return;
    m.delete(w.uid);
    if (m.size === 0) this.members.delete(group);
    this.lists.delete(group);
  }
  list(group: string): readonly Workload[] | undefined {
    const hit = this.lists.get(group);
    if (hit) return hit;
    const m = this.members.get(group);
    if (!m) return undefined;
    const l = Object.freeze([...m.values()]);
    this.lists.set(group, l);
    return l;
  }
}

class Indexes {
  readonly workloads = new Map<string, Workload>();
  readonly services = new Map<string, Service>();
  policies: readonly Policy[] = [];
  readonly byIp = new Map<string, Workload>();
  readonly byVip = new Map<string, Service>();
  readonly byHostname = new Map<string, Service>();
  readonly endpoints = new Groups();
  readonly byNode = new Groups();
  /** Candidate policies per namespace (Global + that namespace's), snapshot order. */
  policiesByNs = new Map<string, readonly Policy[]>();
  globalPolicies: readonly Policy[] = [];
  policyCache = new WeakMap<Workload, readonly Policy[]>();
  policiesByName = new Map<string, Policy>();

  /** Adds or changes a workload (its old self already unindexed); a changed one keeps its place in the snapshot. */
  putWorkload(w: Workload): void {
    this.workloads.set(w.uid, w);
    for (const ip of w.workloadIps) if (!this.byIp.has(ipKey(ip))) this.byIp.set(ipKey(ip), w);
    for (const key of w.services.keys()) this.endpoints.add(key, w);
    this.byNode.add(w.node, w);
  }

  removeWorkload(uid: string): void {
    const w = this.workloads.get(uid);
    if (!w) return;
    this.workloads.delete(uid);
    this.unindex(w);
  }

  /** Takes a workload out of every index but keeps its place (putWorkload follows). */
  unindexWorkload(uid: string): void {
    const w = this.workloads.get(uid);
    if (w) this.unindex(w);
  }

  private unindex(w: Workload): void {
    for (const ip of w.workloadIps) if (this.byIp.get(ipKey(ip)) === w) this.byIp.delete(ipKey(ip));
    for (const key of w.services.keys()) this.endpoints.remove(key, w);
    this.byNode.remove(w.node, w);
  }

  /** Adds or changes a service (its old self already unindexed). */
  putService(s: Service): void {
    this.services.set(serviceKey(s), s);
    for (const vip of s.vips) if (!this.byVip.has(ipKey(vip.address))) this.byVip.set(ipKey(vip.address), s);
    if (!this.byHostname.has(s.hostname)) this.byHostname.set(s.hostname, s);
  }

  removeService(key: string): void {
    const s = this.services.get(key);
    if (!s) return;
    this.services.delete(key);
    this.unindexSvc(s);
  }

  unindexService(key: string): void {
    const s = this.services.get(key);
    if (s) this.unindexSvc(s);
  }

  private unindexSvc(s: Service): void {
    for (const vip of s.vips) if (this.byVip.get(ipKey(vip.address)) === s) this.byVip.delete(ipKey(vip.address));
    if (this.byHostname.get(s.hostname) === s) this.byHostname.delete(s.hostname);
  }

  setPolicies(policies: readonly Policy[]): void {
    this.policies = policies;
    this.globalPolicies = policies.filter((p) => p.scope === "Global");
    this.policiesByNs = new Map();
    for (const ns of new Set(policies.filter((p) => p.scope !== "Global").map((p) => p.namespace))) {
      this.policiesByNs.set(ns, policies.filter((p) => p.scope === "Global" || p.namespace === ns));
    }
    this.policyCache = new WeakMap();
    this.policiesByName = new Map(policies.map((p) => [`${p.namespace}/${p.name}`, p]));
  }
}

function indexesOf(s: MeshSnapshot): Indexes {
  const ix = new Indexes();
  for (const w of s.workloads) if (!ix.workloads.has(w.uid)) ix.putWorkload(w);
  for (const svc of s.services) if (!ix.services.has(serviceKey(svc))) ix.putService(svc);
  ix.setPolicies(s.policies);
  return ix;
}

export function createMeshStore(initial?: MeshSnapshot): MeshStore {
  let current: MeshSnapshot | undefined = initial ?? EMPTY_SNAPSHOT;
  let version = initial ? 1 : 0;
  let ix = indexesOf(current);
  const listeners = new Set<MeshChangeListener>();
  const none: readonly never[] = Object.freeze([]);

  const snapshot = (): MeshSnapshot => (current ??= Object.freeze({ workloads: [...ix.workloads.values()], services: [...ix.services.values()], policies: ix.policies }));

  function changed(change: MeshChange): void {
    version++;
    const errors: unknown[] = [];
    for (const l of [...listeners]) {
      try {
        l(version, change);
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, "mesh store change listeners failed");
  }

  return {
    get version(): number {
      return version;
    },
    snapshot,
    counts: () => ({ workloads: ix.workloads.size, services: ix.services.size, policies: ix.policies.length }),
    replace(s: MeshSnapshot): void {
      ix = indexesOf(s);
      current = s;
      changed({ kind: "replace", snapshot: s });
    },
    apply(d: MeshDelta): void {
      // Removals first: a delta may move an IP (or a VIP) from what it removes to what it adds.
      for (const uid of d.removedWorkloads ?? []) ix.removeWorkload(uid);
      for (const key of d.removedServices ?? []) ix.removeService(key);
      for (const w of d.workloads ?? []) ix.unindexWorkload(w.uid);
      for (const s of d.services ?? []) ix.unindexService(serviceKey(s));
      for (const w of d.workloads ?? []) ix.putWorkload(w);
      for (const s of d.services ?? []) ix.putService(s);
      if (d.policies) ix.setPolicies(d.policies);
      current = undefined;
      changed({ kind: "apply", delta: d });
    },
    onChange(listener: MeshChangeListener): () => void {
      const wrapped: MeshChangeListener = (v, c) => listener(v, c);
      listeners.add(wrapped);
      return () => {
        listeners.delete(wrapped);
      };
    },
    workloadByIp: (ip) => byAnyIp(ix.byIp, ip),
    workloadByUid: (uid) => ix.workloads.get(uid),
    serviceByVip: (ip) => byAnyIp(ix.byVip, ip),
    serviceByHostname: (hostname) => ix.byHostname.get(hostname) ?? ix.byHostname.get(hostname.toLowerCase()),
    serviceByKey: (key) => ix.services.get(key),
    endpoints: (service) => ix.endpoints.list(serviceKey(service)) ?? none,
    workloadsOnNode: (node) => ix.byNode.list(node) ?? none,
    policiesFor(workload: Workload): readonly Policy[] {
      const cache = ix.policyCache;
      const hit = cache.get(workload);
      if (hit) return hit;
      const candidates = ix.policiesByNs.get(workload.namespace) ?? ix.globalPolicies;
      // A Global policy may carry a selector too (Istio: a root-namespace policy with a selector applies mesh-wide to the workloads it selects).
      const named = workload.authorizationPolicies ?? none;
      const result = candidates.filter((p) =>
        p.selectedByName ? named.includes(`${p.namespace}/${p.name}`) : (p.scope !== "WorkloadSelector" && p.selector.size === 0) || selectorMatches(p.selector, workload.labels),
      );
      // Named from another namespace (Istio's root namespace): it applies too. Named but not
      // held (refused, or not arrived yet): it fails closed, as an ALLOW that matches nothing.
      for (const name of named) {
        const p = ix.policiesByName.get(name) ?? missingPolicy(name);
        if (p.selectedByName && !result.includes(p)) result.push(p);
      }
      cache.set(workload, result);
      return result;
    },
  };
}
