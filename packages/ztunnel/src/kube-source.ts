/**
 * The agent's mesh from the Kubernetes API (DISCOVERY=kubernetes): @zt/kube's discovery
 * into the store, with what an operator needs to see: the log (the source chosen, each
 * resource's first sync, errors once per distinct message, objects that could not be
 * used), readiness (waiting for the first full sync, saying for what and why) and
 * `/config_dump` (per resource: sync state, resourceVersion, last error).
 * @zt/kube (and @kubernetes/client-node under it) is loaded only when this source is used.
 */
import type { Logger } from "pino";
import type { KubeConfig, KubeDiscovery, TranslationProblem } from "@zt/kube";
import { Counter, type Registry } from "prom-client";
import { createMeshStore, EMPTY_SNAPSHOT } from "@zt/state";
import type { Config } from "./config.js";
import type { WorkloadSource } from "./workload-source.js";

/** The source, and the discovery under it (zt-controller reads its pods too). */
export interface KubeSource extends WorkloadSource {
  readonly discovery: KubeDiscovery;
  readonly kc: KubeConfig;
}

export async function openKubeSource(config: Pick<Config, "clusterId" | "trustDomain" | "nodeName">, logger: Logger, registry: Registry): Promise<KubeSource> {
  const { KubeConfig, startKubeDiscovery } = await import("@zt/kube");
  const log = logger.child({ component: "kubernetes" });
  const kc = new KubeConfig();
  // In a pod: the service account's token and CA; elsewhere KUBECONFIG or ~/.kube/config.
  kc.loadFromDefault();
  const server = kc.getCurrentCluster()?.server ?? "(none)";
  log.info({ server, user: kc.getCurrentUser()?.name ?? "(none)" }, `workloads, services and policies come from the Kubernetes API at ${server}`);
  const store = createMeshStore(EMPTY_SNAPSHOT);
  const updates = new Counter({ name: "ztunnel_kube_updates_total", help: "Mesh state updates from the Kubernetes API (one per batch of changes)", registers: [registry] });
  let problems: readonly TranslationProblem[] = [];
  let lastUpdate: { at: string; full: boolean; workloads: number; services: number; policies: number } | null = null;
  const said = new Map<string, string>();
  const syncedOnce = new Set<string>();

  const discovery = startKubeDiscovery({
    kc,
    names: { clusterId: config.clusterId, trustDomain: config.trustDomain, domainSuffix: "cluster.local", rootNamespace: "istio-system" },
    onUpdate: ({ full, delta, problems: found }, meta) => {
      const first = lastUpdate === null;
      if (full) store.replace({ workloads: delta.workloads ?? [], services: delta.services ?? [], policies: delta.policies ?? [] });
      else store.apply(delta);
      updates.inc();
      lastUpdate = { at: new Date().toISOString(), full, ...store.counts() };
      const known = new Set(problems.map(problemKey));
      for (const p of found) if (!known.has(problemKey(p))) log.warn({ kind: p.kind, namespace: p.namespace, name: p.name }, `${p.kind} ${p.namespace}/${p.name}: ${p.reason}`);
      problems = found;
      if (first) log.info({ ...lastUpdate, onThisNode: store.workloadsOnNode(config.nodeName).length, resourceVersion: meta.resourceVersion, buildMs: Math.round(meta.buildMs) }, "mesh state synced from the Kubernetes API");
      else log.debug({ version: store.version, resourceVersion: meta.resourceVersion, buildMs: Math.round(meta.buildMs * 10) / 10, changed: (delta.workloads?.length ?? 0) + (delta.removedWorkloads?.length ?? 0) + (delta.services?.length ?? 0) + (delta.removedServices?.length ?? 0), ...lastUpdate }, "mesh state updated from the Kubernetes API");
    },
    onError: (err) => log.error({ err, code: "CONFIG_APPLY_FAILED" }, "mesh state not updated from the Kubernetes API; the last good state stays in force, and the next update translates everything"),
    onStatus: (s) => {
      if (s.synced && !syncedOnce.has(s.resource)) {
        syncedOnce.add(s.resource);
        const how = s.state === "retrying" ? "not served by the API server; none for now" : "listed, watching";
        log.info({ resource: s.resource, objects: s.objects, resourceVersion: s.resourceVersion }, `Kubernetes ${s.resource}: ${how}`);
      }
      const message = s.lastError?.message.replace(/; retrying in \d+ ms$/, "");
      if (s.lastError && said.get(s.resource) !== message) {
        said.set(s.resource, message!);
        const level = s.lastError.code === "KUBE_FORBIDDEN" || s.lastError.code === "KUBE_UNAUTHORIZED" ? "error" : "warn";
        log[level]({ code: s.lastError.code, resource: s.resource, synced: s.synced }, `${s.lastError.message}${s.synced ? "; serving the last good state meanwhile" : ""}`);
      } else if (!s.lastError && said.has(s.resource)) {
        said.delete(s.resource);
        log.info({ resource: s.resource }, `Kubernetes ${s.resource}: reachable again`);
      }
    },
  });

  return {
    store,
    discovery,
    kc,
    pending: () => discovery.pending(),
    dump: () => ({
      kind: "kubernetes",
      server,
      synced: discovery.synced(),
      resources: discovery.status(),
      lastUpdate,
      updates: discovery.stats().updates,
      problems: [...problems],
    }),
    warnings: () => (problems.length > 0 ? [`${problems.length} Kubernetes object(s) could not be used as written; see source.problems`] : []),
    close: () => discovery.close(),
  };
}

const problemKey = (p: TranslationProblem): string => `${p.kind}/${p.namespace}/${p.name}: ${p.reason}`;
