/**
 * Discovery from the Kubernetes API: one reflector per resource the translation reads,
 * their objects kept by "<namespace>/<name>", and the mesh translated from them: in full
 * once every resource has had its first list, then as deltas of what changed. Changes are
 * batched: the first change after an update opens a window (`batchMs`), and everything
 * that arrives in it is one update, so a burst of events costs one translation per window,
 * not one per event, and each costs what changed, not the size of the cluster. A lost
 * watch keeps the last good objects while it reconnects; a relist is a change of the
 * objects it added, changed or dropped.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { ClusterNames, KubeObjects } from "./objects.js";
import { startReflector, type Reflector, type ReflectorOptions, type ResourceRef, type SyncStatus } from "./reflector.js";
import { createTranslator, type TranslationUpdate } from "./translate.js";

export const RESOURCES = {
  namespaces: { plural: "namespaces", group: "", path: "/api/v1/namespaces" },
  pods: { plural: "pods", group: "", path: "/api/v1/pods" },
  services: { plural: "services", group: "", path: "/api/v1/services" },
  endpointSlices: { plural: "endpointslices", group: "discovery.k8s.io", path: "/apis/discovery.k8s.io/v1/endpointslices" },
  // Istio's CRD: a cluster without it has no policies (and is asked again now and then).
  authorizationPolicies: { plural: "authorizationpolicies", group: "security.istio.io", path: "/apis/security.istio.io/v1/authorizationpolicies", optional: true },
} as const satisfies Record<keyof KubeObjects, ResourceRef>;

export interface KubeDiscoveryOptions {
  readonly kc: KubeConfig;
  readonly names: ClusterNames;
  /** The mesh in full (after the first full sync, and after a failed update), then what each batch of changes changed. */
  readonly onUpdate: (update: TranslationUpdate, meta: SnapshotMeta) => void;
  /** A resource's sync state changed (and each error it met). */
  readonly onStatus?: (s: SyncStatus) => void;
  /** An update failed (a bug: the last good state stays in force, and the next update is in full). */
  readonly onError?: (err: unknown) => void;
  readonly batchMs?: number;
  readonly reflector?: ReflectorOptions;
}

export interface SnapshotMeta {
  /** The newest resourceVersion seen across the resources: every change up to it is in the snapshot. */
  readonly resourceVersion: string;
  /** How long the translation took (ms). */
  readonly buildMs: number;
}

export interface KubeDiscovery {
  /** Every resource has had its first full list. */
  synced(): boolean;
  /** The resources still waiting for their first list, with why (for readiness). */
  pending(): string[];
  status(): SyncStatus[];
  /** Updates so far (each batch of changes is one), and the objects held per resource. */
  stats(): { updates: number; objects: Record<string, number> };
  /**
   * What discovery holds of one kind right now, read-only (the map is replaced by a
   * relist: ask again rather than keep it), and a count that moves with every change to
   * it, for a reader that keeps an index of its own (the controller's pods by node).
   */
  objects<K extends Kind>(kind: K): { readonly items: KubeObjects[K]; readonly generation: number };
  close(): void;
}

type Kind = keyof KubeObjects;

export function startKubeDiscovery(o: KubeDiscoveryOptions): KubeDiscovery {
  const batchMs = o.batchMs ?? 100;
  const objects: { [K in Kind]: Map<string, unknown> } = { namespaces: new Map(), pods: new Map(), services: new Map(), endpointSlices: new Map(), authorizationPolicies: new Map() };
  let timer: NodeJS.Timeout | undefined;
  let updates = 0;
  let closed = false;
  let published = false;
  let full = true;
  const changes: { [K in Kind]: Set<string> } = { namespaces: new Set(), pods: new Set(), services: new Set(), endpointSlices: new Set(), authorizationPolicies: new Set() };
  const reflectors = new Map<Kind, Reflector>();
  const generations: { [K in Kind]: number } = { namespaces: 0, pods: 0, services: 0, endpointSlices: 0, authorizationPolicies: 0 };
  const translator = createTranslator(o.names);
  const keyOf = (k: Kind, obj: { metadata?: { name?: string; namespace?: string } }): string => (k === "namespaces" ? (obj.metadata?.name ?? "") : `${obj.metadata?.namespace ?? "default"}/${obj.metadata?.name ?? ""}`);

  const synced = (): boolean => [...reflectors.values()].every((r) => r.status().synced);
  const update = (): void => {
    timer = undefined;
    if (closed || !synced()) return;
    updates++;
    let rv = 0;
    for (const r of reflectors.values()) rv = Math.max(rv, Number(r.status().resourceVersion) || 0);
    const began = performance.now();
    let u: TranslationUpdate;
    try {
      u = translator.update(objects as unknown as KubeObjects, full ? "full" : changes);
    } catch (err) {
      // What the translator remembered may be half updated: the next update translates everything.
      full = true;
      o.onError?.(err);
      return;
    }
    full = false;
    for (const set of Object.values(changes)) set.clear();
    o.onUpdate(u, { resourceVersion: String(rv), buildMs: performance.now() - began });
    published = true;
  };
  const changed = (): void => {
    if (!timer && !closed) timer = setTimeout(update, batchMs);
  };

  for (const kind of Object.keys(RESOURCES) as Kind[]) {
    type O = { metadata?: { name?: string; namespace?: string; resourceVersion?: string } };
    const r = startReflector<O>(
      o.kc,
      RESOURCES[kind],
      {
        replace: (items) => {
          const had = objects[kind] as Map<string, O>;
          const next = new Map<string, O>();
          for (const i of items) {
            const key = keyOf(kind, i);
            const old = had.get(key);
            // What a relist gives back unchanged (its resourceVersion the same) stays the same object: nothing that depends on it is redone.
            if (old && old.metadata?.resourceVersion !== undefined && old.metadata.resourceVersion === i.metadata?.resourceVersion) next.set(key, old);
            else {
              next.set(key, i);
              changes[kind].add(key);
            }
          }
          for (const key of had.keys()) if (!next.has(key)) changes[kind].add(key);
          objects[kind] = next;
          generations[kind]++;
          changed();
        },
        event: (type, obj) => {
          const key = keyOf(kind, obj);
          if (type === "DELETED") objects[kind].delete(key);
          else objects[kind].set(key, obj);
          changes[kind].add(key);
          generations[kind]++;
          changed();
        },
        ...(o.onStatus ? { status: o.onStatus } : {}),
      },
      o.reflector,
    );
    reflectors.set(kind, r);
  }

  return {
    synced,
    pending: () => {
      const waiting = [...reflectors.values()]
        .map((r) => r.status())
        .filter((s) => !s.synced)
        .map((s) => `Kubernetes ${s.resource}: first list not done${s.lastError ? ` (${s.lastError.code}: ${s.lastError.message})` : ""}`);
      return waiting.length === 0 && !published ? ["Kubernetes: the first mesh state is not built yet"] : waiting;
    },
    status: () => [...reflectors.values()].map((r) => r.status()),
    stats: () => ({ updates, objects: Object.fromEntries((Object.keys(objects) as Kind[]).map((k) => [RESOURCES[k].plural, objects[k].size])) }),
    objects: <K extends Kind>(kind: K) => ({ items: objects[kind] as unknown as KubeObjects[K], generation: generations[kind] }),
    close() {
      closed = true;
      clearTimeout(timer);
      for (const r of reflectors.values()) r.stop();
    },
  };
}

