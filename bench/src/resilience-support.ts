/**
 * What the resilience benchmark (resilience.ts) measures with: held client connections that note how and when each one ended, the agents' /metrics, and
 * snapshots of the agents from /proc.
 */
import type net from "node:net";
import { fileURLToPath } from "node:url";
import { echoOnce, openBounded } from "./load.js";
import type { Ending } from "./bench-server.js";
import type { Mesh } from "./mesh.js";
import { cpuSeconds, machineCpuSeconds, openFds, rssKiB, selfCpuSeconds } from "./procfs.js";
import type { ProcFigures } from "./resilience-report.js";
import { errMsg } from "./util.js";

/** 127.74.x.x: agents on 127.74.1.1, 127.74.2.1, … (the harness's layout), workloads below. */
export const NET = 74;
export const WORKLOADS = fileURLToPath(new URL("../resilience-workloads.yaml", import.meta.url));
/**
 * Held connections come from three source nodes (a, c, d), four client identities each,
 * in turn, so that each source agent's SOCKS5 listener holds a third of them.
 */
export const HELD_NODES = ["node-a", "node-b", "node-c", "node-d"];
export const HELD_SOURCES = [1, 3, 4];
export const HELD_CLIENT_IPS = [11, 12, 13, 14].flatMap((h) => HELD_SOURCES.map((k) => `127.74.${k}.${h}`));
/** The destination workload (node-b), where the bench server listens. */
export const SERVER_IP = "127.74.2.10";

/** Metrics read from each agent's /metrics at every milestone. */
export const METRICS: readonly [key: string, name: string, labels?: string][] = [
  ["rssBytes", "process_resident_memory_bytes"],
  ["openFds", "process_open_fds"],
  ["heapUsedBytes", "nodejs_heap_size_used_bytes"],
  ["heapTotalBytes", "nodejs_heap_size_total_bytes"],
  ["externalBytes", "nodejs_external_memory_bytes"],
  ["eventLoopLagMinSec", "nodejs_eventloop_lag_min_seconds"],
  ["eventLoopLagP99Sec", "nodejs_eventloop_lag_p99_seconds"],
  ["eventLoopLagMaxSec", "nodejs_eventloop_lag_max_seconds"],
  ["dataPathFds", "ztunnel_data_path_descriptors", 'state="in_use"'],
  ["dataPathFdCapacity", "ztunnel_data_path_descriptors", 'state="capacity"'],
  ["hboneHeldBytes", "ztunnel_hbone_held_bytes"],
];

export function log(s: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
}

/** Milliseconds on the monotonic clock (the bench server stamps its endings with the same clock). */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** One value of a Prometheus text exposition (the first series whose labels contain `labels`). */
export function metric(text: string, name: string, labels = ""): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name && (m[2] ?? "").includes(labels)) return Number(m[3]);
  }
  return NaN;
}

/**
 * Live connections and the HBONE pool's size, from the summary on the admin port's home page
 * (the only place that shows them: a table of `<th>key</th><td>value</td>` rows, values as JSON).
 */
function summary(html: string): Record<string, number> {
  const named: Record<string, string> = { quot: '"', lt: "<", gt: ">", amp: "&" };
  const unescape = (v: string): string => v.replace(/&(#\d+|\w+);/g, (m, e: string) => (e.startsWith("#") ? String.fromCharCode(Number(e.slice(1))) : (named[e] ?? m)));
  const cell = (k: string): string | undefined => new RegExp(`<th>${k}</th><td>([^<]*)</td>`).exec(html)?.[1];
  const live = Number(cell("live"));
  let pool: { connections?: number; streams?: number } = {};
  try {
    pool = JSON.parse(unescape(cell("pool") ?? "{}")) as typeof pool;
  } catch {
    // keep empty
  }
  return { live, poolConnections: pool.connections ?? NaN, poolStreams: pool.streams ?? NaN };
}

/** What each agent says about itself: METRICS from /metrics and the admin page's summary. */
export async function scrape(mesh: Mesh): Promise<Record<string, number>[]> {
  return Promise.all(
    mesh.pids.map(async (_, i) => {
      try {
        const text = await mesh.metrics(i);
        const page = await mesh.admin(i, "/");
        return { ...Object.fromEntries(METRICS.map(([key, name, labels]) => [key, metric(text, name, labels)])), ...summary(page) };
      } catch (e) {
        log(`   reading agent ${i ? "B" : "A"}'s /metrics or admin page failed: ${errMsg(e)}`);
        return {};
      }
    }),
  );
}

// ---- client connections that are held, and how each one ended ----

export interface HeldSet {
  readonly socks: net.Socket[];
  readonly endings: Ending[];
  errors: number;
  lastError?: string;
  openMs: number;
  /** Held connections that have not ended. */
  open(): number;
  destroyAll(): void;
}

/** Keep reading a held socket (a reset is only seen by a socket that reads) and note its first ending. */
function watchEnding(sock: net.Socket, onEnd: (e: Ending) => void): void {
  let done = false;
  const end = (how: Ending["how"], code?: string): void => {
    if (done) return;
    done = true;
    onEnd({ how, ms: nowMs(), ...(code !== undefined ? { code } : {}) });
  };
  sock.on("data", () => {});
  sock.on("end", () => {
    end("fin");
    sock.destroy();
  });
  sock.on("error", (e: NodeJS.ErrnoException) => end(e.code === "ECONNRESET" ? "reset" : "other", e.code));
  sock.on("close", () => end("other", "close"));
  sock.resume();
}

/** Open `n` connections through the mesh from the `from` IPs in turn (one identity each) to `to`, each with a 1-byte echo, and hold them. */
export async function openHeld(mesh: Mesh, o: { port: number; from: readonly string[]; to: string; n: number; concurrency: number; capMs: number }): Promise<HeldSet> {
  const set: HeldSet = {
    socks: [],
    endings: [],
    errors: 0,
    openMs: 0,
    open: () => set.socks.length - set.endings.length,
    destroyAll: () => set.socks.forEach((s) => s.destroy()),
  };
  const one = Buffer.from("x");
  const deadline = Date.now() + o.capMs;
  let started = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (started < o.n && Date.now() < deadline) {
      const from = o.from[started++ % o.from.length]!;
      let sock: net.Socket | undefined;
      try {
        sock = await openBounded(() => mesh.open(o.port, from, o.to));
        await echoOnce(sock, one, 10_000);
        set.socks.push(sock);
        watchEnding(sock, (e) => set.endings.push(e));
      } catch (e) {
        sock?.destroy();
        set.errors++;
        set.lastError = errMsg(e);
        if (set.errors > 200) break;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  set.openMs = performance.now() - t0;
  return set;
}

// ---- samples of the agents ----

export function procFigures(pid: number): ProcFigures {
  return { rssKiB: rssKiB(pid), fds: openFds(pid), cpuSec: cpuSeconds(pid) };
}

export interface Snapshot {
  /** Seconds since the measure started. */
  readonly t: number;
  readonly agents: ProcFigures[];
  readonly selfCpu: number;
  readonly serverCpu: number;
  readonly machineBusy: number;
}

export function snapshotter(pids: readonly number[], serverPid: number): () => Snapshot {
  const t0 = performance.now();
  return () => ({ t: (performance.now() - t0) / 1000, agents: pids.map(procFigures), selfCpu: selfCpuSeconds(), serverCpu: cpuSeconds(serverPid), machineBusy: machineCpuSeconds().busy });
}

/** CPU of everything else on the machine between two snapshots, in percent of one core. */
export function othersPct(a: Snapshot, b: Snapshot): number {
  const ours = b.selfCpu - a.selfCpu + (b.serverCpu - a.serverCpu) + b.agents.reduce((s, x, i) => s + x.cpuSec - a.agents[i]!.cpuSec, 0);
  return Math.max(0, ((b.machineBusy - a.machineBusy - ours) / (b.t - a.t)) * 100);
}
