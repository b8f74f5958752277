import type { CertManager } from "@zt/identity";
import { policyName, type MeshStore } from "@zt/state";
import { describeConfig, type Config } from "./config.js";
import type { WorkloadSource } from "./workload-source.js";

export interface ConfigDumpDeps {
  readonly config: Config;
  readonly store: MeshStore;
  readonly certs: CertManager;
  readonly version: string;
  /** Capture state (REDIRECT_MODE, captured pod set). */
  readonly capture?: () => unknown;
  /** The workload file: reload status, and warnings about it. */
  readonly source?: Pick<WorkloadSource, "dump" | "warnings">;
  /** What the data path holds: descriptors, unconsumed HBONE bytes, per peer identity. */
  readonly dataPath?: () => Promise<unknown>;
}

/** `/config_dump`: the mesh state as this agent sees it, in the contract's shape (§8). */
export function createConfigDump(d: ConfigDumpDeps): () => Promise<unknown> {
  return async () => {
    // Asked first: what the workers hold arrives after a round trip, the rest is read at once after it.
    const dataPath = (await d.dataPath?.()) ?? null;
    const s = d.store.snapshot();
    return {
      warnings: d.source?.warnings() ?? [],
      // Per workload, the policies that apply to it (as the data path evaluates them), by "namespace/name".
      workloads: s.workloads.map((w) => ({ ...(plain(w) as object), policies: d.store.policiesFor(w).map(policyName) })),
      services: s.services.map(plain),
      policies: s.policies.map(plain),
      certificates: d.certs.dump(),
      config: describeConfig(d.config),
      capture: d.capture?.() ?? { mode: d.config.redirectMode },
      source: d.source?.dump() ?? null,
      dataPath,
      version: { agent: d.version, stateVersion: d.store.version, node: process.version },
    };
  };
}

/** Maps become objects so the dump reads like the workload file it came from. */
function plain(v: unknown): unknown {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}
