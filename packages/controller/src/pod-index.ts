/**
 * The pods the CA's node check reads: by namespace/name, and those on one node. Read from
 * the pods discovery already holds (KubeDiscovery.objects("pods")), so the controller
 * watches pods once; the by-node index is rebuilt on demand, only when the pods changed
 * since the last question (one pass over the pods, not one per request).
 */
import type { Pod } from "@zt/kube";

export interface PodInfo {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** "" while the pod is not scheduled. */
  readonly nodeName: string;
  readonly serviceAccount: string;
  /** Pending, Running, Succeeded, Failed, Unknown ("" when not reported yet). */
  readonly phase: string;
}

export interface PodLookup {
  pod(namespace: string, name: string): PodInfo | undefined;
  podsOnNode(node: string): readonly PodInfo[];
}

/** Where the pods come from: a map by "<namespace>/<name>" and a count that moves with every change. */
export type PodSource = () => { readonly items: ReadonlyMap<string, Pod>; readonly generation: number };

export function podInfo(p: Pod): PodInfo {
  return {
    namespace: p.metadata?.namespace ?? "default",
    name: p.metadata?.name ?? "",
    uid: p.metadata?.uid ?? "",
    nodeName: p.spec?.nodeName ?? "",
    serviceAccount: p.spec?.serviceAccountName || "default",
    phase: p.status?.phase ?? "",
  };
}

export function createPodIndex(source: PodSource): PodLookup {
  let built: { items: ReadonlyMap<string, Pod>; generation: number; byNode: Map<string, PodInfo[]> } | undefined;
  const byNode = (): Map<string, PodInfo[]> => {
    const now = source();
    if (built && built.items === now.items && built.generation === now.generation) return built.byNode;
    const index = new Map<string, PodInfo[]>();
    for (const p of now.items.values()) {
      const info = podInfo(p);
      if (!info.nodeName) continue;
      let list = index.get(info.nodeName);
      if (!list) index.set(info.nodeName, (list = []));
      list.push(info);
    }
    built = { items: now.items, generation: now.generation, byNode: index };
    return index;
  };
  return {
    pod(namespace, name) {
      const p = source().items.get(`${namespace}/${name}`);
      return p ? podInfo(p) : undefined;
    },
    podsOnNode: (node) => byNode().get(node) ?? [],
  };
}
