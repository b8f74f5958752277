/**
 * The xDS resource table: every workload, service and policy of the store, each encoded
 * once into an Any with a short content hash as its version, shared by every client.
 * Kept incrementally from the store's changes: an apply re-encodes what it touches (and,
 * when the selector policies change, the workloads whose `authorization_policies` list
 * changes); a replace diffs the whole set. Each change names what changed or went, per type.
 */
import { createHash } from "node:crypto";
import { ADDRESS_TYPE, AUTHORIZATION_TYPE, encodeAddress, encodeAuthorization, policyToWire, serviceToWire, workloadToWire, type XdsResource } from "@zt/istio";
import { serviceKey, type MeshChange, type MeshStore, type Policy, type Service, type Workload } from "@zt/state";

export const XDS_TYPES = [ADDRESS_TYPE, AUTHORIZATION_TYPE] as const;
export type XdsType = (typeof XDS_TYPES)[number];

export const isXdsType = (t: string): t is XdsType => t === ADDRESS_TYPE || t === AUTHORIZATION_TYPE;

/** Names changed (added or with a new version) or removed, in one type. */
export interface TableChange {
  readonly type: XdsType;
  readonly names: readonly string[];
}

export interface XdsTable {
  get(type: XdsType, name: string): XdsResource | undefined;
  names(type: XdsType): IterableIterator<string>;
  size(type: XdsType): number;
  /** Resources encoded since the start (a measure of the work done). */
  readonly encodes: number;
  close(): void;
}

export const policyName = (p: Pick<Policy, "namespace" | "name">): string => `${p.namespace}/${p.name}`;

function hashOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("base64url").slice(0, 12);
}

/** The selector policies' names and selectors: when these stay the same, no workload's list can change. */
function selectorKey(policies: readonly Policy[]): string {
  return policies
    .filter((p) => p.selector.size > 0)
    .map((p) => `${p.scope}|${policyName(p)}|${[...p.selector].map(([k, v]) => `${k}=${v}`).join(",")}`)
    .join("\n");
}

/**
 * `unservable`: a resource that could not be encoded (an address that is not an IP, say);
 * it is left out (and taken away from clients that had it), the others go on.
 */
export function createXdsTable(store: MeshStore, onChange: (changes: readonly TableChange[]) => void, unservable: (type: XdsType, name: string, err: unknown) => void): XdsTable {
  const tables: Record<XdsType, Map<string, XdsResource>> = { [ADDRESS_TYPE]: new Map(), [AUTHORIZATION_TYPE]: new Map() };
  /** Per workload uid: its authorization_policies as last encoded. */
  const lists = new Map<string, string>();
  let selectors = "";
  let encodes = 0;

  function put(type: XdsType, name: string, encoded: () => Uint8Array, changed: Set<string>): void {
    encodes++;
    let value: Uint8Array;
    try {
      value = encoded();
    } catch (err) {
      unservable(type, name, err);
      drop(type, name, changed);
      return;
    }
    const version = hashOf(value);
    if (tables[type].get(name)?.version === version) return;
    tables[type].set(name, { name, version, resource: { type_url: type, value } });
    changed.add(name);
  }

  function drop(type: XdsType, name: string, changed: Set<string>): void {
    if (tables[type].delete(name)) changed.add(name);
  }

  const authzList = (w: Workload): string[] => store.policiesFor(w).filter((p) => p.selector.size > 0).map(policyName);

  function putWorkload(w: Workload, changed: Set<string>): void {
    const names = authzList(w);
    lists.set(w.uid, names.join("\n"));
    put(ADDRESS_TYPE, w.uid, () => encodeAddress({ workload: workloadToWire({ ...w, authorizationPolicies: names }) }), changed);
  }

  function putService(s: Service, changed: Set<string>): void {
    put(ADDRESS_TYPE, serviceKey(s), () => encodeAddress({ service: serviceToWire(s) }), changed);
  }

  function putPolicies(policies: readonly Policy[], changed: Set<string>): void {
    const seen = new Set<string>();
    for (const p of policies) {
      const name = policyName(p);
      if (seen.has(name)) continue;
      seen.add(name);
      put(AUTHORIZATION_TYPE, name, () => encodeAuthorization(policyToWire(p)), changed);
    }
    for (const name of [...tables[AUTHORIZATION_TYPE].keys()]) if (!seen.has(name)) drop(AUTHORIZATION_TYPE, name, changed);
  }

  /** After a policy change: re-encodes only the workloads whose list is now different. */
  function relist(workloads: Iterable<Workload>, changed: Set<string>): void {
    for (const w of workloads) if (lists.get(w.uid) !== authzList(w).join("\n")) putWorkload(w, changed);
  }

  function replace(): void {
    const snap = store.snapshot();
    const addr = new Set<string>();
    const authz = new Set<string>();
    const keep = new Set<string>();
    for (const w of snap.workloads) {
      if (keep.has(w.uid)) continue;
      keep.add(w.uid);
      putWorkload(w, addr);
    }
    for (const s of snap.services) {
      const key = serviceKey(s);
      if (keep.has(key)) continue;
      keep.add(key);
      putService(s, addr);
    }
    for (const name of [...tables[ADDRESS_TYPE].keys()]) {
      if (!keep.has(name)) {
        drop(ADDRESS_TYPE, name, addr);
        lists.delete(name);
      }
    }
    putPolicies(snap.policies, authz);
    selectors = selectorKey(snap.policies);
    emit(addr, authz);
  }

  function apply(change: Extract<MeshChange, { kind: "apply" }>): void {
    const d = change.delta;
    const addr = new Set<string>();
    const authz = new Set<string>();
    for (const uid of d.removedWorkloads ?? []) {
      if (store.workloadByUid(uid)) continue; // removed and added back in the same delta
      drop(ADDRESS_TYPE, uid, addr);
      lists.delete(uid);
    }
    for (const key of d.removedServices ?? []) if (!store.serviceByKey(key)) drop(ADDRESS_TYPE, key, addr);
    for (const w of d.workloads ?? []) {
      const current = store.workloadByUid(w.uid);
      if (current) putWorkload(current, addr);
    }
    for (const s of d.services ?? []) {
      const current = store.serviceByKey(serviceKey(s));
      if (current) putService(current, addr);
    }
    if (d.policies) {
      putPolicies(d.policies, authz);
      const next = selectorKey(d.policies);
      if (next !== selectors) {
        selectors = next;
        relist(workloadsOf(), addr);
      }
    }
    emit(addr, authz);
  }

  function* workloadsOf(): Generator<Workload> {
    for (const uid of lists.keys()) {
      const w = store.workloadByUid(uid);
      if (w) yield w;
    }
  }

  function emit(addr: Set<string>, authz: Set<string>): void {
    const changes: TableChange[] = [];
    if (addr.size > 0) changes.push({ type: ADDRESS_TYPE, names: [...addr] });
    if (authz.size > 0) changes.push({ type: AUTHORIZATION_TYPE, names: [...authz] });
    if (changes.length > 0) onChange(changes);
  }

  replace();
  const unsubscribe = store.onChange((_v, change) => (change.kind === "replace" ? replace() : apply(change)));

  return {
    get: (type, name) => tables[type].get(name),
    names: (type) => tables[type].keys(),
    size: (type) => tables[type].size,
    get encodes(): number {
      return encodes;
    },
    close: unsubscribe,
  };
}
