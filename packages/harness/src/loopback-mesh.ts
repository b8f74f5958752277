import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startAgentProcess, type AgentProcess } from "./agent-process.js";

export interface LoopbackMeshOptions {
  /** Second octet of every address: node i's agent binds 127.<net>.<i+1>.1. Pick one per test file. */
  readonly net: number;
  readonly nodes: readonly string[];
  /** Workload file shared by every agent; undefined = the agent's embedded default. */
  readonly workloadsFile?: string | undefined;
  /** Per-node workload files (index = node), overriding `workloadsFile`: lets agents disagree, e.g. about an identity. */
  readonly workloadsFiles?: readonly (string | undefined)[];
  /** Extra environment for every agent (e.g. OUTBOUND_TRAFFIC_POLICY). */
  readonly env?: Record<string, string>;
  /** Extra environment per node (index = node), over `env`. */
  readonly envs?: readonly (Record<string, string> | undefined)[];
  /** Built-in CA directory shared by the agents; default: a fresh temp dir (removed on stop). */
  readonly caDir?: string;
  /** "answering": return once each agent answers readiness, ready or not (e.g. before its API server is up). */
  readonly waitFor?: "ready" | "answering";
}

export interface LoopbackMesh {
  readonly agents: readonly AgentProcess[];
  /** The host address of node i's agent (SOCKS5 is on <host>:15080). */
  host(i: number): string;
  readonly caDir: string;
  stop(): Promise<void>;
}

/** Envs for one agent on loopback: every listener on the node's own 127.x address, inbound on each local workload IP. */
export function loopbackEnv(host: string, caDir: string): Record<string, string> {
  return {
    ADMIN_ADDR: `${host}:15000`,
    STATS_ADDR: `${host}:15020`,
    READINESS_ADDR: `${host}:15021`,
    OUTBOUND_ADDR: `${host}:15001`,
    INBOUND_PLAINTEXT_ADDR: `${host}:15006`,
    SOCKS5_ADDR: `${host}:15080`,
    INBOUND_ADDR: "workloads:15008",
    CA_CERTS_DIR: caDir,
    REDIRECT_MODE: "none",
  };
}

/**
 * Two or more agents on one host's loopback addresses, no privileges needed.
 * Agents start one after another so the first one generates the shared CA.
 */
export async function startLoopbackMesh(o: LoopbackMeshOptions): Promise<LoopbackMesh> {
  const ownCa = o.caDir === undefined;
  const caDir = o.caDir ?? path.join(mkdtempSync(path.join(tmpdir(), "zt-ca-")), "cacerts");
  const agents: AgentProcess[] = [];
  const host = (i: number): string => `127.${o.net}.${i + 1}.1`;
  const stop = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a.stop()));
    if (ownCa) rmSync(path.dirname(caDir), { recursive: true, force: true });
  };
  try {
    for (const [i, node] of o.nodes.entries()) {
      const file = o.workloadsFiles?.[i] ?? o.workloadsFile;
      const env = { ...loopbackEnv(host(i), caDir), ...(file ? { LOCAL_XDS_PATH: file } : {}), ...o.env, ...o.envs?.[i] };
      agents.push(await startAgentProcess(node, env, o.waitFor ? { waitFor: o.waitFor } : {}));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { agents, host, caDir, stop };
}
