/**
 * The fake API server's objects: one resourceVersion counter for all of them, as etcd
 * gives, and a bounded history of changes for watches to resume from. Compaction drops
 * the history (and paged-list snapshots), so an older resourceVersion gets 410 Gone.
 */
import { randomUUID } from "node:crypto";

export interface Resource {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly singular: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly shortNames?: readonly string[];
}

export const RESOURCES: readonly Resource[] = [
  { group: "", version: "v1", plural: "namespaces", singular: "namespace", kind: "Namespace", namespaced: false, shortNames: ["ns"] },
  { group: "", version: "v1", plural: "pods", singular: "pod", kind: "Pod", namespaced: true, shortNames: ["po"] },
  { group: "", version: "v1", plural: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, shortNames: ["cm"] },
  { group: "", version: "v1", plural: "services", singular: "service", kind: "Service", namespaced: true, shortNames: ["svc"] },
  { group: "discovery.k8s.io", version: "v1", plural: "endpointslices", singular: "endpointslice", kind: "EndpointSlice", namespaced: true },
  { group: "security.istio.io", version: "v1", plural: "authorizationpolicies", singular: "authorizationpolicy", kind: "AuthorizationPolicy", namespaced: true, shortNames: ["ap"] },
];

export const apiVersionOf = (r: Resource): string => (r.group ? `${r.group}/${r.version}` : r.version);

export type KubeObject = { metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; creationTimestamp?: string; labels?: Record<string, string> } & Record<string, unknown> } & Record<string, unknown>;

export interface Change {
  readonly rv: number;
  readonly resource: Resource;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: KubeObject;
}

export class FakeStore {
  private rv = 1;
  /** Changes with rv > compactedTo are kept. */
  private compactedTo = 1;
  private readonly objects = new Map<Resource, Map<string, KubeObject>>(RESOURCES.map((r) => [r, new Map()]));
  private readonly history: Change[] = [];
  private readonly listeners = new Set<(c: Change) => void>();

  constructor(private readonly maxHistory = 10_000) {}

  get resourceVersion(): number {
    return this.rv;
  }

  /** The oldest resourceVersion a watch may resume from. */
  get oldestResumable(): number {
    return this.compactedTo;
  }

  resource(kind: string): Resource {
    const r = RESOURCES.find((x) => x.kind === kind || x.plural === kind);
    if (!r) throw new Error(`fake API server: no resource ${kind}`);
    return r;
  }

  items(r: Resource): KubeObject[] {
    return [...this.objects.get(r)!.values()];
  }

  get(r: Resource, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(r)!.get(key(r, namespace, name));
  }

  /**
   * Create or replace; the server sets uid (kept across updates), resourceVersion and
   * creationTimestamp (kept across updates). A creationTimestamp given at creation is kept:
   * the real API server never lets a client set it, but a test needs pods of a known age
   * (which of two pods with one IP is the newer decides which one owns it).
   */
  apply(kind: string, obj: Record<string, unknown>): KubeObject {
    const r = this.resource(kind);
    const o = structuredClone(obj) as KubeObject;
    const meta = o.metadata;
    if (!meta?.name) throw new Error("fake API server: an object needs metadata.name");
    if (r.namespaced) meta.namespace ??= "default";
    else delete meta.namespace;
    const k = key(r, meta.namespace, meta.name);
    const prev = this.objects.get(r)!.get(k);
    meta.uid = prev?.metadata.uid ?? randomUUID();
    meta.creationTimestamp = prev?.metadata.creationTimestamp ?? meta.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z");
    meta.resourceVersion = String(++this.rv);
    o["apiVersion"] = apiVersionOf(r);
    o["kind"] = r.kind;
    this.objects.get(r)!.set(k, o);
    this.record({ rv: this.rv, resource: r, type: prev ? "MODIFIED" : "ADDED", object: o });
    return o;
  }

  remove(kind: string, namespace: string | undefined, name: string): boolean {
    const r = this.resource(kind);
    const k = key(r, namespace, name);
    const prev = this.objects.get(r)!.get(k);
    if (!prev) return false;
    this.objects.get(r)!.delete(k);
    const o = structuredClone(prev);
    o.metadata.resourceVersion = String(++this.rv);
    this.record({ rv: this.rv, resource: r, type: "DELETED", object: o });
    return true;
  }

  /** Changes of `r` after `rv`; undefined when some of them were compacted away (410 Gone). */
  since(r: Resource, rv: number): Change[] | undefined {
    if (rv < this.compactedTo) return undefined;
    return this.history.filter((c) => c.resource === r && c.rv > rv);
  }

  /** Bumped by every compaction: list snapshots of an older epoch are gone. */
  epoch = 0;

  /** Forget the history: watches and continues from before now get 410 Gone. */
  compact(): void {
    this.history.length = 0;
    this.compactedTo = this.rv;
    this.epoch++;
  }

  subscribe(f: (c: Change) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  private record(c: Change): void {
    this.history.push(c);
    if (this.history.length > this.maxHistory) {
      const dropped = this.history.splice(0, this.history.length - this.maxHistory);
      this.compactedTo = dropped.at(-1)!.rv;
    }
    for (const f of this.listeners) f(c);
  }
}

function key(r: Resource, namespace: string | undefined, name: string): string {
  return r.namespaced ? `${namespace ?? "default"}/${name}` : name;
}
