/**
 * Discovery from the Kubernetes API: one reflector per resource the translation reads,
 * their objects kept by "<namespace>/<name>", and the mesh snapshot rebuilt from them.
 * Changes are batched: the first change after a rebuild opens a window (`batchMs`), and
 * everything that arrives in it is one rebuild, so a burst of events costs one
 * translation per window, not one per event. Nothing is published before every resource
 * has had its first full list; a lost watch keeps the last good objects while it
 * reconnects.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { MeshSnapshot } from "@zt/state";
import type { ClusterNames, KubeObjects, TranslationProblem } from "./objects.js";
import { startReflector, type Reflector, type ReflectorOptions, type ResourceRef, type SyncStatus } from "./reflector.js";
import { createTranslator } from "./translate.js";

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
  /** A new snapshot (after the first full sync, then after each batch of changes), with what could not be used. */
  readonly onSnapshot: (snapshot: MeshSnapshot, problems: readonly TranslationProblem[], meta: SnapshotMeta) => void;
  /** A resource's sync state changed (and each error it met). */
  readonly onStatus?: (s: SyncStatus) => void;
  /** A rebuild failed (a bug: the last good snapshot stays in force). */
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
  /** Rebuilds so far, and the objects held per resource. */
  stats(): { rebuilds: number; objects: Record<string, number> };
  close(): void;
}

type Kind = keyof KubeObjects;

export function startKubeDiscovery(o: KubeDiscoveryOptions): KubeDiscovery {
  const batchMs = o.batchMs ?? 100;
  const objects: { [K in Kind]: Map<string, unknown> } = { namespaces: new Map(), pods: new Map(), services: new Map(), endpointSlices: new Map(), authorizationPolicies: new Map() };
  let timer: NodeJS.Timeout | undefined;
  let rebuilds = 0;
  let closed = false;
  let published = false;
  const reflectors = new Map<Kind, Reflector>();
  const translate = createTranslator(o.names);
  const keyOf = (k: Kind, obj: { metadata?: { name?: string; namespace?: string } }): string => (k === "namespaces" ? (obj.metadata?.name ?? "") : `${obj.metadata?.namespace ?? "default"}/${obj.metadata?.name ?? ""}`);

  const synced = (): boolean => reflectors.size === Object.keys(RESOURCES).length && [...reflectors.values()].every((r) => r.status().synced);
  const rebuild = (): void => {
    timer = undefined;
    if (closed || !synced()) return;
    rebuilds++;
    let rv = 0;
    for (const r of reflectors.values()) rv = Math.max(rv, Number(r.status().resourceVersion) || 0);
    const began = performance.now();
    let t: ReturnType<typeof translate>;
    try {
      t = translate(objects as unknown as KubeObjects);
    } catch (err) {
      o.onError?.(err);
      return;
    }
    o.onSnapshot(t.snapshot, t.problems, { resourceVersion: String(rv), buildMs: performance.now() - began });
    published = true;
  };
  const changed = (): void => {
    if (!timer && !closed) timer = setTimeout(rebuild, batchMs);
  };

  for (const kind of Object.keys(RESOURCES) as Kind[]) {
    type O = { metadata?: { name?: string; namespace?: string; resourceVersion?: string } };
    const r = startReflector<O>(
      o.kc,
      RESOURCES[kind],
      {
        replace: (items) => {
          objects[kind] = new Map(items.map((i) => [keyOf(kind, i), i]));
          changed();
        },
        event: (type, obj) => {
          if (type === "DELETED") objects[kind].delete(keyOf(kind, obj));
          else objects[kind].set(keyOf(kind, obj), obj);
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
    stats: () => ({ rebuilds, objects: Object.fromEntries((Object.keys(objects) as Kind[]).map((k) => [RESOURCES[k].plural, objects[k].size])) }),
    close() {
      closed = true;
      clearTimeout(timer);
      for (const r of reflectors.values()) r.stop();
    },
  };
}

