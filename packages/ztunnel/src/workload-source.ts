/**
 * The agent's workload file: the first load (a bad file stops the start), then the watcher
 * (a bad reload keeps the last good state), with what an operator needs to see about it —
 * in the log, in `/config_dump` (`source`, `warnings`) and in metrics:
 * `ztunnel_config_reloads_total{result="ok"|"rejected"}` and `ztunnel_config_stale` (1 while
 * the file's latest content was refused and the agent serves the last good state).
 */
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { ZtError } from "@zt/errors";
import { closestMatch, createMeshStore, formatBytes, openLocalConfig, type MeshStore } from "@zt/state";
import type { Config } from "./config.js";

export interface WorkloadSourceDump {
  readonly kind: "file";
  readonly path: string;
  readonly maxBytes: number;
  /** "current": serving the file's content; "stale": its latest content was refused, serving the last good one. */
  readonly state: "current" | "stale";
  readonly lastGood: { readonly stateVersion: number; readonly at: string; readonly workloads: number; readonly services: number; readonly policies: number };
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
  readonly reloads: { readonly ok: number; readonly rejected: number };
}

export interface WorkloadSource {
  readonly store: MeshStore;
  /** For /config_dump `source`: what it reads and how that is going. */
  dump(): object;
  /** What readiness still waits for (none for the file: it is loaded before the agent starts). */
  pending?(): string[];
  /** Things that are probably a mistake (e.g. no workload on NODE_NAME), for /config_dump. */
  warnings(): string[];
  close(): void;
}

/** Loads `path` (rejecting like loadLocalConfig) and follows it. */
export async function openWorkloadSource(config: Config, path: string, logger: Logger, registry: Registry): Promise<WorkloadSource> {
  const defaults = { trustDomain: config.trustDomain, clusterId: config.clusterId };
  const maxBytes = config.localXdsMaxBytes;
  // Assigned as soon as the first load returns, before any handler can run (they run from timers).
  let store!: MeshStore;
  const reloads = new Counter({ name: "ztunnel_config_reloads_total", help: "Reloads of the workload file, by result (ok, rejected: the last good state is kept)", labelNames: ["result"], registers: [registry] });
  const stale = new Gauge({ name: "ztunnel_config_stale", help: "1 while the workload file's latest content was refused and the agent serves the last good state", registers: [registry] });
  reloads.labels("ok").inc(0);
  reloads.labels("rejected").inc(0);
  stale.set(0);
  const counts = { ok: 0, rejected: 0 };
  let lastGood = { stateVersion: 0, at: "", workloads: 0, services: 0, policies: 0 };
  let lastError: WorkloadSourceDump["lastError"] = null;
  let isStale = false;
  const setStale = (v: boolean): void => {
    isStale = v;
    stale.set(v ? 1 : 0);
  };

  let warnings: string[] = [];
  const checkWarnings = (): void => {
    const next = nodeWarnings(store, config.nodeName, path);
    if (next.join("\n") !== warnings.join("\n")) for (const w of next) logger.warn({ path, nodeName: config.nodeName }, w);
    warnings = next;
  };

  const { snapshot, watcher } = await openLocalConfig(
    path,
    defaults,
    {
      onSnapshot: (s) => {
        store.replace(s);
        counts.ok++;
        reloads.labels("ok").inc();
        lastGood = { stateVersion: store.version, at: new Date().toISOString(), ...sizes(store) };
        if (isStale) logger.info({ path }, "workload file accepted again; no longer serving a stale state");
        setStale(false);
        logger.info({ path, version: store.version, workloads: s.workloads.length, services: s.services.length, policies: s.policies.length }, "workload file reloaded");
        checkWarnings();
      },
      onError: (err: ZtError) => {
        const hint = err.code === "CONFIG_FILE_TOO_LARGE" ? ` (the cap is LOCAL_XDS_MAX_BYTES=${maxBytes}, ${formatBytes(maxBytes)})` : "";
        counts.rejected++;
        reloads.labels("rejected").inc();
        lastError = { code: err.code, message: `${err.message}${hint}`, at: new Date().toISOString() };
        setStale(true);
        logger.error({ code: err.code, path, stateVersion: store.version }, `workload file rejected, keeping the last good state: ${err.message}${hint}`);
      },
      onUnchanged: () => {
        if (!isStale) return;
        setStale(false);
        logger.info({ path, version: store.version }, "workload file is back to the state being served; no longer stale");
      },
    },
    { maxBytes },
  );
  store = createMeshStore(snapshot);
  lastGood = { stateVersion: store.version, at: new Date().toISOString(), ...sizes(store) };
  checkWarnings();

  return {
    store,
    dump: (): WorkloadSourceDump => ({ kind: "file", path, maxBytes, state: isStale ? "stale" : "current", lastGood, lastError, reloads: { ...counts } }),
    warnings: () => [...warnings],
    close: () => watcher.close(),
  };
}

function sizes(store: MeshStore): { workloads: number; services: number; policies: number } {
  const s = store.snapshot();
  return { workloads: s.workloads.length, services: s.services.length, policies: s.policies.length };
}

/** No workload on this node is usually a NODE_NAME typo: say so, with the node names the file has. */
function nodeWarnings(store: MeshStore, nodeName: string, path: string): string[] {
  if (store.workloadsOnNode(nodeName).length > 0) return [];
  const nodes = [...new Set(store.snapshot().workloads.map((w) => w.node).filter((n) => n !== ""))].sort();
  if (nodes.length === 0) return [`no workload in ${path} has a node; this agent (NODE_NAME=${JSON.stringify(nodeName)}) serves no pod`];
  const guess = closestMatch(nodeName, nodes);
  const shown = nodes.length > 10 ? `${nodes.slice(0, 10).join(", ")} and ${nodes.length - 10} more` : nodes.join(", ");
  return [
    `NODE_NAME=${JSON.stringify(nodeName)} has no workloads in ${path}, so this agent serves no pod (a typo in NODE_NAME?)${guess ? `; did you mean ${JSON.stringify(guess)}?` : ""} nodes in the file: ${shown}`,
  ];
}
