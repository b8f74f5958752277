/**
 * The mesh path: two `ztunnel run` agents on loopback net 250 (via @zt/harness), the
 * client bound to the source workload's IP talking SOCKS5 to agent A, HBONE to agent B,
 * and the bench server listening on the destination workload's IP. The resilience
 * benchmark starts its own pair on another net with its own workloads (`MeshOptions`).
 *
 * The harness is loaded at run time from its build output so that the baselines still
 * run (and the failure is reported) while the agent does not build.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type net from "node:net";
import type { ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";

export const MESH_NET = 250;
export const CLIENT_IP = "127.250.1.10";
export const SERVER_IP = "127.250.2.10";
export const SOCKS = { host: "127.250.1.1", port: 15080 };
export const WORKLOADS_FILE = fileURLToPath(new URL("../workloads.yaml", import.meta.url));
const HARNESS = new URL("../../packages/harness/dist/index.js", import.meta.url);

/** The part of @zt/harness this benchmark uses. */
interface HarnessApi {
  ZTUNNEL_BIN: string;
  startLoopbackMesh(o: { net: number; nodes: readonly string[]; workloadsFile?: string; env?: Record<string, string> }): Promise<{
    agents: readonly {
      node: string;
      proc: ChildProcess;
      logs: Record<string, unknown>[];
      get(which: "admin" | "stats" | "readiness", path: string): Promise<{ status: number; body: string }>;
    }[];
    host(i: number): string;
    stop(): Promise<void>;
  }>;
  socksConnect(o: { proxy: { host: string; port: number }; localAddress?: string; host: string; port: number }): Promise<net.Socket>;
}

export interface MeshOptions {
  /** Second octet of the agents' addresses: agent i on 127.<net>.<i+1>.1 (default 250). */
  readonly net?: number;
  readonly workloadsFile?: string;
  /** Extra environment for every agent. */
  readonly env?: Record<string, string>;
  /** Node names, agent i for node i (default node-a, node-b). */
  readonly nodes?: readonly string[];
}

export interface Mesh {
  /** Agent A (node-a, the source side), agent B (node-b, the destination side), then any further nodes'. */
  readonly pids: readonly number[];
  readonly procs: readonly ChildProcess[];
  /**
   * A connection bound to `from` (default CLIENT_IP) to `to` (default SERVER_IP), through the
   * SOCKS5 of the agent on `from`'s node: 127.<net>.<k>.x is on agent k-1's node.
   */
  open(port: number, from?: string, to?: string): Promise<net.Socket>;
  /** GET /metrics from agent i's stats port (Prometheus text). */
  metrics(i: number): Promise<string>;
  /** GET a path from agent i's admin port (body, or an error when not 200). */
  admin(i: number, path: string): Promise<string>;
  /** The last lines each agent printed (stdout and stderr), for failure reports. */
  tails(): string;
  stop(): Promise<void>;
}

const TAIL = 16 * 1024;

export async function startMesh(o: MeshOptions = {}): Promise<Mesh> {
  const harnessPath = fileURLToPath(HARNESS);
  if (!existsSync(harnessPath)) throw new Error(`harness not built: ${harnessPath} is missing (did \`tsc -b\` fail?)`);
  const h = (await import(HARNESS.href)) as HarnessApi;
  if (!existsSync(h.ZTUNNEL_BIN)) throw new Error(`agent not built: ${h.ZTUNNEL_BIN} is missing (did \`tsc -b\` fail?)`);
  const mesh = await h.startLoopbackMesh({ net: o.net ?? MESH_NET, nodes: o.nodes ?? ["node-a", "node-b"], workloadsFile: o.workloadsFile ?? WORKLOADS_FILE, ...(o.env ? { env: o.env } : {}) });
  // The harness parses every log line into memory, in this process; under load (one access
  // log line per connection) that would cost the load generator CPU and memory. Keep a
  // short tail instead.
  const tails = new Map<string, string>();
  for (const a of mesh.agents) {
    tails.set(a.node, a.logs.map((l) => JSON.stringify(l)).join("\n").slice(-TAIL) + "\n");
    const keep = (c: Buffer): void => {
      const t = (tails.get(a.node) ?? "") + c.toString();
      tails.set(a.node, t.length > TAIL ? t.slice(t.length - TAIL) : t);
    };
    for (const s of [a.proc.stdout, a.proc.stderr] as (Readable | null)[]) {
      if (!s) continue;
      s.removeAllListeners("data");
      s.on("data", keep);
    }
    a.logs.length = 0;
  }
  const pids = mesh.agents.map((a) => a.proc.pid!);
  const proxyOf = (from: string): { host: string; port: number } => {
    const i = Number(from.split(".")[2]) - 1;
    if (!(i >= 0 && i < mesh.agents.length)) throw new Error(`no agent for a client on ${from}: agent i runs on 127.<net>.<i+1>.1`);
    return { host: mesh.host(i), port: SOCKS.port };
  };
  return {
    pids,
    procs: mesh.agents.map((a) => a.proc),
    open: async (port, from = CLIENT_IP, to = SERVER_IP) => h.socksConnect({ proxy: proxyOf(from), localAddress: from, host: to, port }),
    async metrics(i) {
      const r = await mesh.agents[i]!.get("stats", "/metrics");
      if (r.status !== 200) throw new Error(`GET /metrics on ${mesh.agents[i]!.node}: HTTP ${r.status}`);
      return r.body;
    },
    async admin(i, path) {
      const r = await mesh.agents[i]!.get("admin", path);
      if (r.status !== 200) throw new Error(`GET ${path} on ${mesh.agents[i]!.node}'s admin port: HTTP ${r.status}`);
      return r.body;
    },
    tails: () =>
      mesh.agents
        .map((a) => {
          const exit = a.proc.exitCode !== null || a.proc.signalCode !== null ? ` (exited: code ${a.proc.exitCode}, signal ${a.proc.signalCode})` : "";
          return `--- ${a.node}${exit}, last output:\n${(tails.get(a.node) ?? "").split("\n").slice(-15).join("\n")}`;
        })
        .join("\n"),
    async stop() {
      const t = setTimeout(() => {
        for (const a of mesh.agents) if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill("SIGKILL");
      }, 5000);
      await mesh.stop();
      clearTimeout(t);
    },
  };
}
