/** The resilience benchmark's figures, and its section of bench/RESULTS.md. */
import { execFileSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { agentWorkers } from "./util.js";

export interface ProcFigures {
  readonly rssKiB: number;
  readonly fds: number;
  readonly cpuSec: number;
}

export interface HeldResult {
  readonly target: number;
  /** Connections asked for: the target, or what the source agents' SOCKS5 shares of descriptors allow. */
  readonly n: number;
  /** What one agent's SOCKS5 listener may hold. */
  readonly socks5Cap: number;
  /** Source agents (A, C, D) and client identities the connections were spread over. */
  readonly sources: number;
  readonly identities: number;
  readonly dataPathCapacity: number;
  readonly opened: number;
  readonly errors: number;
  readonly lastError?: string;
  readonly openMs: number;
  readonly endedDuringHold: number;
  readonly closeMs: number;
  readonly stillOpenAfterClose: number;
  readonly howClosed: Record<string, number>;
  readonly holdWindowSec: number;
  /** Per agent (A, B, C, D): percent of one core with no connection (before opening), and over the hold window. */
  readonly baselineCpuPct: number[];
  readonly idleCpuPct: number[];
  readonly maxSecondCpuPct: number[];
  readonly medianSecondCpuPct: number[];
  readonly clientCpuPct: number;
  readonly serverCpuPct: number;
  readonly othersPct: number;
  /** Milestones: before, afterOpen, holdStart, atHoldEnd, closed, close+5 ... close+30. */
  readonly marks: Record<string, { t: number; agents: ProcFigures[] }>;
  /** /metrics of each agent at some milestones. */
  readonly metrics: Record<string, Record<string, number>[]>;
  readonly samples: { t: number; agents: ProcFigures[] }[];
}

/** How the connections at one end ended after the kill; times from the kill to the reset. */
export interface Side {
  readonly resets: number;
  readonly fins: number;
  readonly other: number;
  readonly otherCodes: Record<string, number>;
  readonly stillOpen: number;
  readonly minMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface KillFigures {
  readonly victim: "A" | "B";
  readonly conns: number;
  readonly openErrors: number;
  readonly lastError?: string;
  /** Connections the echo server held when it started watching. */
  readonly watching: number;
  readonly endedBeforeKill: number;
  readonly clients: Side;
  readonly servers: Side;
  readonly waitedMs: number;
  /** From kill() until this process saw the killed agent's exit (SIGCHLD). */
  readonly exitMs: number;
  /** CPU the surviving agent and the load generator used from the kill until every connection had ended. */
  readonly survivorCpuMs: number;
  readonly clientCpuMs: number;
  readonly othersPct: number;
}

export type KillRound = KillFigures | { readonly victim: "A" | "B"; readonly error: string };

export interface ResilienceResults {
  date: string;
  machine: ReturnType<typeof machineInfo> & { busyAtStartPct: number; nofile: number };
  params: {
    held: { target: number; baselineMs: number; holdMs: number; settleMs: number; afterCloseSec: number; concurrency: number };
    kill: { conns: number; rounds: number; idleMs: number; waitMs: number };
    quick: boolean;
  };
  held?: HeldResult;
  heldError?: string;
  kill: KillRound[];
  totalSec: number;
}

export function machineInfo(): { nproc: number; cpu: string; memGiB: number; kernel: string; node: string; commit: string } {
  const repo = fileURLToPath(new URL("../../", import.meta.url));
  const git = (args: string[]): string => {
    try {
      return execFileSync("git", ["-C", repo, ...args], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    } catch {
      return "?";
    }
  };
  const dirty = git(["status", "--porcelain", "packages"]) ? " (+ uncommitted changes in packages/)" : "";
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? "?",
    memGiB: Math.round(os.totalmem() / (1 << 30)),
    kernel: os.release(),
    node: process.version,
    commit: `${git(["rev-parse", "--short", "HEAD"])}${dirty}`,
  };
}

const f = (x: number | undefined, digits = 0): string =>
  x === undefined || !Number.isFinite(x) ? "n/a" : x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const median = (xs: number[]): number => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.floor((v.length - 1) / 2)]! : NaN;
};
const mib = (kib: number | undefined): string => f(kib === undefined ? undefined : kib / 1024, 0);

/** Column heads of the held-connections table, by agent index (startMesh's order of nodes). */
const AGENT_NAMES = ["agent A (node-a, source)", "agent B (node-b, destination)", "agent C (node-c, source)", "agent D (node-d, source)"];

function heldSection(h: HeldResult, r: ResilienceResults): string[] {
  const P = r.params.held;
  const m = (name: string, i: number): ProcFigures | undefined => h.marks[name]?.agents[i];
  const last = `close+${P.afterCloseSec}`;
  const agents = h.marks["before"]?.agents.map((_, i) => i) ?? [0, 1];
  const row = (label: string, cell: (i: number) => string): string => `| ${label} | ${agents.map(cell).join(" | ")} |`;
  const series = (names: string[], get: (p: ProcFigures) => string) => (i: number) => names.map((n) => { const p = m(n, i); return p ? get(p) : "n/a"; }).join(" / ");
  const before = (i: number) => m("before", i);
  const perConn = (i: number, get: (p: ProcFigures) => number, at = "afterOpen"): string => {
    const a = m(at, i);
    const b = before(i);
    // Agent B holds every connection; a source about its share (the clients take the sources in turn).
    const through = i === 1 ? h.opened : h.opened / h.sources;
    return a && b && through > 0 ? f((get(a) - get(b)) / through, 2) : "n/a";
  };
  const aboveBefore = (i: number, at: string): string => {
    const b = before(i)?.rssKiB;
    const end = m(at, i)?.rssKiB;
    return b !== undefined && end !== undefined ? `${end >= b ? "+" : ""}${mib(end - b)}` : "n/a";
  };
  const backAt = [20, P.afterCloseSec].filter((s, k, a) => s <= P.afterCloseSec && a.indexOf(s) === k);
  const met = (name: string, key: string, i: number, scale = 1, digits = 0): string => f((h.metrics[name]?.[i]?.[key] ?? NaN) * scale, digits);
  const closeSec = [5, 10, 15, 20, 30, 45, 60].filter((s) => s <= P.afterCloseSec);
  const how = Object.entries(h.howClosed).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  const reason =
    h.n < h.target
      ? [
          `${f(h.n)} connections rather than ${f(h.target)}: the open-file limit of this run is ${r.machine.nofile}, so an agent's data path may hold`,
          `${f(h.dataPathCapacity)} descriptors (packages/ztunnel/src/fd-limit.ts: the limit minus a tenth) and its SOCKS5 listener a quarter of them,`,
          `${f(h.socks5Cap)}; each of the ${h.sources} source agents holds ${f(Math.ceil(h.n / h.sources))}, a little below that.`,
        ]
      : [];
  return [
    `### Held connections: ${f(h.opened)} for ${P.holdMs / 1000} s`,
    "",
    `All to the echo server on node-b, so agent B holds every one of them. Opened through the SOCKS5 of ${h.sources} source agents`,
    `(A, C, D: ${f(Math.ceil(h.n / h.sources))} each; one agent's SOCKS5 listener may hold ${f(h.socks5Cap)}), spread over ${h.identities} client identities`,
    `(${f(Math.ceil(h.n / h.identities))} each: one identity may hold HBONE_MAX_STREAMS_PER_IDENTITY = 2048 streams at agent B; the default is kept),`,
    "each carrying a 1-byte echo, then held idle (the clients read, nothing is sent). Every agent sampled every second from /proc:",
    "VmRSS, entries of /proc/<pid>/fd, utime+stime. Agents C and D do what agent A does.",
    ...reason,
    "",
    `| | ${agents.map((i) => AGENT_NAMES[i] ?? `agent ${i}`).join(" | ")} |`,
    `|---|${agents.map(() => "---:|").join("")}`,
    row("RSS before / after open / at the end of the hold (MiB)", series(["before", "afterOpen", "atHoldEnd"], (p) => mib(p.rssKiB))),
    row(`RSS after close, ${closeSec.map((s) => `+${s}`).join(" / ")} s (MiB)`, series(closeSec.map((s) => `close+${s}`), (p) => mib(p.rssKiB))),
    row("largest 1 s fall of RSS after close (MiB, at +s)", (i) => {
      let best = { drop: 0, at: 0 };
      for (let k = 1; k <= P.afterCloseSec; k++) {
        const a = m(k === 1 ? "closed" : `close+${k - 1}`, i)?.rssKiB;
        const b = m(`close+${k}`, i)?.rssKiB;
        if (a !== undefined && b !== undefined && a - b > best.drop) best = { drop: a - b, at: k };
      }
      return best.drop ? `${mib(best.drop)} at +${best.at}` : "none";
    }),
    row(`V8 heap used / committed (/metrics): before, at the end, +${P.afterCloseSec} s (MiB)`, (i) =>
      ["before", "atHoldEnd", last].map((n) => `${met(n, "heapUsedBytes", i, 1 / (1 << 20))} / ${met(n, "heapTotalBytes", i, 1 / (1 << 20))}`).join(", "),
    ),
    row("RSS per held connection, right after opening / at the end of the hold (KiB)", (i) => `${perConn(i, (p) => p.rssKiB)} / ${perConn(i, (p) => p.rssKiB, "atHoldEnd")}`),
    row(`RSS still above before, ${backAt.map((s) => `+${s}`).join(" / ")} s after close (MiB)`, (i) => backAt.map((s) => aboveBefore(i, `close+${s}`)).join(" / ")),
    row("descriptors before / after open / at the end / after close", series(["before", "afterOpen", "atHoldEnd", last], (p) => f(p.fds))),
    row("descriptors per held connection", (i) => perConn(i, (p) => p.fds)),
    row(`CPU while holding, mean over s ${P.settleMs / 1000}-${P.holdMs / 1000} (% of one core)`, (i) => f(h.idleCpuPct[i], 2)),
    row(`CPU with no connection, ${P.baselineMs / 1000} s before opening (% of one core)`, (i) => f(h.baselineCpuPct[i], 2)),
    row("CPU while holding, median second / busiest second (% of one core)", (i) => `${f(h.medianSecondCpuPct[i], 1)} / ${f(h.maxSecondCpuPct[i], 1)}`),
    row("/metrics at the end: event-loop delay min / p99 / max over the hold (ms)", (i) => ["eventLoopLagMinSec", "eventLoopLagP99Sec", "eventLoopLagMaxSec"].map((k) => met("atHoldEnd", k, i, 1000, 1)).join(" / ")),
    row("/metrics at the end: V8 external memory (MiB)", (i) => met("atHoldEnd", "externalBytes", i, 1 / (1 << 20))),
    row(`/metrics: ztunnel_data_path_descriptors in_use, before / at the end / +${closeSec.at(-1)} s`, (i) => ["before", "atHoldEnd", last].map((n) => met(n, "dataPathFds", i)).join(" / ")),
    row("/metrics at the end: ztunnel_hbone_held_bytes", (i) => met("atHoldEnd", "hboneHeldBytes", i)),
    row(`admin page: live connections, before / at the end / +${P.afterCloseSec} s`, (i) => ["before", "atHoldEnd", last].map((n) => met(n, "live", i)).join(" / ")),
    row(`admin page: HBONE connections in the pool (the sources' outbound), before / at the end / +${P.afterCloseSec} s`, (i) =>
      i !== 1 ? ["before", "atHoldEnd", last].map((n) => met(n, "poolConnections", i)).join(" / ") : "n/a",
    ),
    row("/metrics: process_open_fds at the end", (i) => met("atHoldEnd", "openFds", i)),
    "",
    `- Opened ${f(h.opened)} of ${f(h.n)} in ${f(h.openMs / 1000, 1)} s (concurrency ${P.concurrency})${h.errors ? `; **${h.errors} failed**, last error: \`${h.lastError}\`` : ", none failed"}.`,
    `- Ended during the hold: ${h.endedDuringHold}. Closed (the echo server sends FIN first, it comes back through the mesh) in ${f(h.closeMs / 1000, 1)} s: ${how}; still open after: ${h.stillOpenAfterClose}.`,
    "- The event-loop delay is prom-client's monitor (eventLoopMonitoringPrecision 100: a timer every 100 ms, so figures near 100 ms",
    "  mean no delay), reset by each scrape, so it covers the hold; its max is the longest the loop was blocked (a garbage",
    "  collection, when the busiest second shows one).",
    `- CPU over the hold window (${f(h.holdWindowSec, 0)} s): load generator ${f(h.clientCpuPct, 2)}%, echo server ${f(h.serverCpuPct, 2)}%, rest of machine ${f(h.othersPct, 1)}% of one core.`,
    "- Descriptors after the close, above those before: the HBONE connections the sources' pools keep (idle ones are released after",
    "  POOL_UNUSED_RELEASE_TIMEOUT, 5 minutes by default; at most 100 streams each), and agent B's ends of them.",
    "- Per held connection = (figure - figure before) / the connections the agent holds (agent B all of them, a source a third).",
    "  Right after opening, the heap still holds the garbage of the burst; V8 may collect it during the hold (then RSS falls and",
    "  that second's CPU shows it). After the close the agent collects garbage and calls malloc_trim once its live connections",
    "  fell below a quarter of the peak (a 10 s timer, so 0-10 s after the close), and once more at the next look; \"largest 1 s",
    "  fall\" shows when RSS fell most.",
    "",
  ];
}

type Ok = KillFigures;

function killSection(r: ResilienceResults): string[] {
  const P = r.params.kill;
  const ok = (v: "A" | "B"): Ok[] => r.kill.filter((k): k is Ok => k.victim === v && "clients" in k);
  const failed = r.kill.filter((k): k is Extract<KillRound, { error: string }> => "error" in k);
  const sum = (rs: Ok[], g: (k: Ok) => number): number => rs.reduce((a, k) => a + g(k), 0);
  const far = (k: Ok): Side => (k.victim === "B" ? k.clients : k.servers);
  const near = (k: Ok): Side => (k.victim === "B" ? k.servers : k.clients);
  const scen = [
    { v: "B" as const, killed: "agent B (destination)", at: "clients (their SOCKS5 sockets on agent A)", nearAt: "echo server (agent B's upstream sockets)" },
    { v: "A" as const, killed: "agent A (source)", at: "echo server (agent B's upstream sockets)", nearAt: "clients (their SOCKS5 sockets on agent A)" },
  ];
  const codes = (s: Side[]): string => {
    const c: Record<string, number> = {};
    for (const x of s) for (const [k, v] of Object.entries(x.otherCodes)) c[k] = (c[k] ?? 0) + v;
    const t = Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", ");
    return t ? ` (${t})` : "";
  };
  const lines = [
    "### A peer agent SIGKILLed under open connections",
    "",
    `Each round starts a fresh pair of agents, opens ${f(P.conns)} connections (1-byte echo each, then idle, the clients reading), waits`,
    `${P.idleMs / 1000} s, and sends SIGKILL to one agent. Every socket notes its first ending on the machine's monotonic clock: ECONNRESET`,
    `(reset), 'end' (a clean FIN) or anything else; time = from just before kill() to the reset. ${P.rounds} rounds per victim, alternating;`,
    `counts summed over the rounds, times the median of the rounds' figures. "Still open" = no ending ${P.waitMs / 1000} s after the kill.`,
    "",
    "| Killed | measured at | connections | reset | clean FIN | other | still open | p50 (ms) | p99 (ms) | max (ms) |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...scen.map(({ v, killed, at }) => {
      const rs = ok(v);
      if (!rs.length) return `| ${killed} | ${at} | FAILED | | | | | | | |`;
      const s = rs.map(far);
      return `| ${killed} | ${at} | ${rs.length} x ${f(P.conns)} = ${f(sum(rs, (k) => k.conns))} | ${f(sum(rs, (k) => far(k).resets))} | ${f(sum(rs, (k) => far(k).fins))} | ${f(sum(rs, (k) => far(k).other))}${codes(s)} | ${f(sum(rs, (k) => far(k).stillOpen))} | ${f(median(s.map((x) => x.p50Ms)), 1)} | ${f(median(s.map((x) => x.p99Ms)), 1)} | ${f(median(s.map((x) => x.maxMs)), 1)} |`;
    }),
    "",
    "The other end of the same connections, the one that faced the killed process. No agent code runs there: its kernel closes",
    "those sockets as the process dies, and since the agent holds SO_LINGER 0 on every open proxied socket (cleared only before",
    "a graceful close), the kernel resets them rather than sending a FIN:",
    "",
    "| Killed | measured at | reset | clean FIN | other | still open |",
    "|---|---|---:|---:|---:|---:|",
    ...scen.map(({ v, killed, nearAt }) => {
      const rs = ok(v);
      if (!rs.length) return `| ${killed} | ${nearAt} | FAILED | | | |`;
      return `| ${killed} | ${nearAt} | ${f(sum(rs, (k) => near(k).resets))} | ${f(sum(rs, (k) => near(k).fins))} | ${f(sum(rs, (k) => near(k).other))}${codes(rs.map(near))} | ${f(sum(rs, (k) => near(k).stillOpen))} |`;
    }),
    "",
    "Rounds (time to reset: the first one, then p50 / p99 / max in ms; when this process saw the killed agent exit (SIGCHLD);",
    "when every connection at both ends had ended (polled every 100 ms) and the CPU used meanwhile; rest of machine = CPU of",
    "everything else from 1 s before the kill until then, % of one core):",
    "",
    ...scen.flatMap(({ v, killed }) =>
      ok(v).map((k, i) => {
        const s = far(k);
        const extra = [k.openErrors ? `${k.openErrors} failed to open (last: \`${k.lastError}\`)` : "", k.endedBeforeKill ? `${k.endedBeforeKill} ended before the kill` : "", k.watching !== k.conns ? `the echo server watched ${k.watching}` : ""].filter(Boolean);
        return `- ${killed}, round ${i + 1}: first ${f(s.minMs, 1)}, ${f(s.p50Ms, 1)} / ${f(s.p99Ms, 1)} / ${f(s.maxMs, 1)}; the killed agent's exit seen after ${f(k.exitMs, 1)} ms; all ended within ${f(k.waitedMs, 0)} ms, meanwhile CPU: agent ${k.victim === "A" ? "B" : "A"} ${f(k.survivorCpuMs, 0)} ms, load generator ${f(k.clientCpuMs, 0)} ms; rest of machine ${f(k.othersPct, 0)}%${extra.length ? `; ${extra.join("; ")}` : ""}`;
      }),
    ),
    ...failed.map((k) => `- **kill ${k.victim}: a round failed**:\n\n\`\`\`\n${k.error}\n\`\`\``),
    "",
  ];
  return lines;
}

export function renderResilience(r: ResilienceResults): string {
  const M = r.machine;
  return [
    "<!-- resilience:begin -->",
    "## Resilience: held connections, a peer agent killed",
    "",
    "Written by the benchmark itself (it asserts nothing); re-run to refresh:",
    "",
    "```",
    r.params.quick ? "BENCH_QUICK=1 bash bench/resilience.sh" : "bash bench/resilience.sh",
    "```",
    "",
    `- Date: ${r.date}; whole run ${f(r.totalSec)} s`,
    `- Machine: ${M.nproc} CPUs (nproc), ${M.cpu}, ${M.memGiB} GiB RAM, Linux ${M.kernel}; Node ${M.node}; tree: ${M.commit}`,
    `- Open-file limit: ${M.nofile} (the agents inherit it); machine busy before the run: ${f(M.busyAtStartPct)}% of one core (other processes)`,
    `- Agents: ${agentWorkers()}`,
    "- `ztunnel run` agents started by `startLoopbackMesh` (@zt/harness) on 127.74.x.x with `bench/resilience-workloads.yaml`,",
    "  default settings: the load generator (this process) binds a client workload IP (one identity each) and talks SOCKS5 to",
    "  that node's agent, which carries the connection over HBONE to agent B (node-b), which dials the echo server",
    "  (`bench/src/server.ts`, a child process) on 127.74.2.10. Held connections: four agents, sources A (127.74.1.1), C and D",
    "  (127.74.3.1, 127.74.4.1), clients 127.74.{1,3,4}.11-14. Kill rounds: two agents, A and B, clients 127.74.1.11-18.",
    "  The agents' logs are read and dropped (a short tail is kept for failure reports).",
    "",
    ...(r.held ? heldSection(r.held, r) : ["### Held connections", "", "**FAILED**:", "", "```", r.heldError ?? "?", "```", ""]),
    ...killSection(r),
    "<!-- resilience:end -->",
  ].join("\n");
}
