/** The table (stdout) and bench/RESULTS.md. */
import type { ConnRateResult, IdleResult, LatencyResult, ThroughputResult } from "./load.js";

export type PathName = "direct" | "stunnel" | "mesh";
export type MeasureName = "single" | "parallel" | "latency" | "connRate" | "idle";
export const PATHS: readonly PathName[] = ["direct", "stunnel", "mesh"];

export interface Cpu {
  readonly wallSec: number;
  /** Percent of one core, over the measure's wall time. */
  readonly clientPct: number;
  readonly serverPct: number;
  readonly proxiesPct: number;
  /** Per proxy process: stunnel client, stunnel server / agent A (node-a), agent B (node-b). */
  readonly eachProxyPct: number[];
  /** The rest of the machine's busy time (other processes, uncharged kernel work). */
  readonly othersPct: number;
  readonly stealPct: number;
}

export type Cell = { value: unknown; cpu: Cpu } | { error: string } | { na: true };

export interface SetupState {
  ok: boolean;
  detail?: string;
  error?: string;
}

export interface Results {
  date: string;
  machine: { nproc: number; cpu: string; memGiB: number; kernel: string; node: string; stunnel: string; openssl: string; nofile: number; commit: string; busyAtStartPct?: number };
  params: Record<string, unknown> & {
    single: { bytes: number };
    parallel: { conns: number; perConn: number };
    latency: { warm: number; n: number; size: number };
    connRate: { concurrency: number; durMs: number };
    idle: { n: number };
    quick: boolean;
  };
  setup: { direct?: SetupState; stunnel?: SetupState; mesh?: SetupState; stunnelLog?: string };
  measures: Partial<Record<MeasureName, Partial<Record<PathName, Cell>>>>;
  totalSec: number;
}

type Get = (path: PathName) => number | undefined | "failed" | "n/a" | "absent";

interface Row {
  readonly label: string;
  readonly get: Get;
  readonly digits: number;
  /** Ratios between paths make sense for this row. */
  readonly ratios: boolean;
}

function cellOf(r: Results, m: MeasureName, p: PathName): Cell | "absent" {
  if (r.setup[p] && !r.setup[p]!.ok) return "absent";
  return r.measures[m]?.[p] ?? "absent";
}

function pick<T>(r: Results, m: MeasureName, f: (v: T) => number): Get {
  return (p) => {
    const c = cellOf(r, m, p);
    if (c === "absent") return "absent";
    if ("error" in c) return "failed";
    if ("na" in c) return "n/a";
    return f(c.value as T);
  };
}

/** A figure per proxy CPU-second: how much the proxies got done for the CPU they burned. */
function perProxyCpu<T>(r: Results, m: MeasureName, f: (v: T) => number): Get {
  return (p) => {
    if (p === "direct") return "n/a";
    const c = cellOf(r, m, p);
    if (c === "absent") return "absent";
    if ("error" in c) return "failed";
    if ("na" in c) return "n/a";
    return c.cpu.proxiesPct > 0 ? f(c.value as T) / (c.cpu.proxiesPct / 100) : NaN;
  };
}

function rows(r: Results): Row[] {
  const lat = (f: (v: LatencyResult) => number): Get => pick<LatencyResult>(r, "latency", f);
  const added = (f: (v: LatencyResult) => number): Get => (p) => {
    if (p === "direct") return "n/a";
    const a = lat(f)(p);
    const d = lat(f)("direct");
    return typeof a === "number" && typeof d === "number" ? a - d : typeof a === "number" ? "n/a" : a;
  };
  const { params: P } = r;
  return [
    { label: `Throughput, 1 conn, ${fmtBytes(P.single.bytes)} (MiB/s)`, get: pick<ThroughputResult>(r, "single", (v) => v.mibPerSec), digits: 0, ratios: true },
    { label: `Throughput, ${P.parallel.conns} conns x ${fmtBytes(P.parallel.perConn)} (MiB/s)`, get: pick<ThroughputResult>(r, "parallel", (v) => v.mibPerSec), digits: 0, ratios: true },
    { label: `  per proxy CPU-second, 1 conn (MiB)`, get: perProxyCpu<ThroughputResult>(r, "single", (v) => v.mibPerSec), digits: 0, ratios: true },
    { label: `RTT p50, ${P.latency.size} B echo (us)`, get: lat((v) => v.p50us), digits: 1, ratios: true },
    { label: `RTT p99 (us)`, get: lat((v) => v.p99us), digits: 1, ratios: true },
    { label: `RTT p50 added vs direct (us)`, get: added((v) => v.p50us), digits: 1, ratios: false },
    { label: `RTT p99 added vs direct (us)`, get: added((v) => v.p99us), digits: 1, ratios: false },
    { label: `New connections/s (c=${P.connRate.concurrency})`, get: pick<ConnRateResult>(r, "connRate", (v) => v.perSec), digits: 0, ratios: true },
    { label: `  per proxy CPU-second (connections)`, get: perProxyCpu<ConnRateResult>(r, "connRate", (v) => v.perSec), digits: 0, ratios: true },
    { label: `  connect+echo p50 (ms)`, get: pick<ConnRateResult>(r, "connRate", (v) => v.p50ms), digits: 2, ratios: true },
    { label: `  connect+echo p99 (ms)`, get: pick<ConnRateResult>(r, "connRate", (v) => v.p99ms), digits: 2, ratios: true },
    { label: `Proxy RSS per idle conn, ${P.idle.n} conns (KiB)`, get: pick<IdleResult>(r, "idle", (v) => v.perConnKiB), digits: 1, ratios: true },
    { label: `  proxies' RSS idle -> loaded (MiB)`, get: pick<IdleResult>(r, "idle", (v) => v.rssAfterKiB / 1024), digits: 0, ratios: false },
  ];
}

function fmtBytes(n: number): string {
  return n >= 1 << 30 ? `${n / (1 << 30)} GiB` : `${n / (1 << 20)} MiB`;
}

function fmt(v: ReturnType<Get>, digits: number): string {
  if (v === undefined) return "?";
  if (typeof v === "string") return v === "absent" ? "-" : v === "failed" ? "FAILED" : "n/a";
  if (!Number.isFinite(v)) return "n/a";
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(a: ReturnType<Get>, b: ReturnType<Get>): string {
  if (typeof a !== "number" || typeof b !== "number" || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "";
  const q = a / b;
  return `${q.toFixed(q < 10 ? 2 : 1)}x`;
}

function grid(r: Results): string[][] {
  const head = ["Measure", "direct", "stunnel", "mesh", "mesh/direct", "mesh/stunnel", "stunnel/direct"];
  const body = rows(r).map((row) => {
    const v = PATHS.map((p) => row.get(p));
    const [d, s, m] = v;
    let cells = v.map((x) => fmt(x, row.digits));
    if (row.label.includes("idle -> loaded")) {
      cells = PATHS.map((p) => {
        const c = cellOf(r, "idle", p);
        if (c === "absent" || !("value" in c)) return fmt(row.get(p), 0);
        const i = c.value as IdleResult;
        return `${(i.rssBeforeKiB / 1024).toFixed(0)} -> ${(i.rssAfterKiB / 1024).toFixed(0)}`;
      });
    }
    return [row.label, ...cells, ...(row.ratios ? [ratio(m, d), ratio(m, s), ratio(s, d)] : ["", "", ""])];
  });
  return [head, ...body];
}

function textTable(g: string[][]): string {
  const widths = g[0]!.map((_, i) => Math.max(...g.map((r) => r[i]!.length)));
  return g.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")).join("\n");
}

function mdTable(g: string[][]): string {
  const [head, ...body] = g;
  const line = (r: string[]): string => `| ${r.join(" | ")} |`;
  return [line(head!), `|${head!.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`, ...body.map(line)].join("\n");
}

interface Goal {
  readonly goal: string;
  readonly status: "met" | "not met" | "not measured";
  readonly detail: string;
}

function goals(r: Results): Goal[] {
  const rs = rows(r);
  const idx = {
    0: rs.findIndex((x) => x.label.startsWith("Throughput, 1 conn")),
    1: rs.findIndex((x) => x.label.startsWith("Throughput, ") && !x.label.startsWith("Throughput, 1 conn")),
    3: rs.findIndex((x) => x.label.startsWith("RTT p99 (")),
    6: rs.findIndex((x) => x.label.startsWith("New connections/s")),
  } as Record<number, number>;
  const get = (i: number, p: PathName): ReturnType<Get> => rs[idx[i]!]!.get(p);
  const num = (v: ReturnType<Get>): v is number => typeof v === "number" && Number.isFinite(v);
  const why = (...vs: ReturnType<Get>[]): string => (vs.every(num) ? "" : `not measured: ${vs.map((v) => (num(v) ? "ok" : String(v))).join(" / ")}`);
  const out: Goal[] = [];
  for (const [i, what] of [[0, "1 connection"], [1, `${r.params.parallel.conns} connections`]] as const) {
    const m = get(i, "mesh");
    const s = get(i, "stunnel");
    out.push(
      num(m) && num(s)
        ? { goal: `Throughput >= the stunnel pair's (${what})`, status: m >= s ? "met" : "not met", detail: `mesh ${m.toFixed(0)} MiB/s vs stunnel ${s.toFixed(0)} MiB/s (${(m / s).toFixed(2)}x)` }
        : { goal: `Throughput >= the stunnel pair's (${what})`, status: "not measured", detail: why(m, s) },
    );
  }
  {
    const m = get(3, "mesh");
    const d = get(3, "direct");
    out.push(
      num(m) && num(d)
        ? { goal: "p99 added latency <= 0.2 ms", status: m - d <= 200 ? "met" : "not met", detail: `mesh p99 ${m.toFixed(1)} us - direct p99 ${d.toFixed(1)} us = ${(m - d).toFixed(1)} us added` }
        : { goal: "p99 added latency <= 0.2 ms", status: "not measured", detail: why(m, d) },
    );
  }
  {
    const m = get(6, "mesh");
    const s = get(6, "stunnel");
    out.push(
      num(m) && num(s)
        ? { goal: "New connections/s >= 5x the stunnel pair's", status: m >= 5 * s ? "met" : "not met", detail: `mesh ${m.toFixed(0)}/s vs stunnel ${s.toFixed(0)}/s (${(m / s).toFixed(2)}x)` }
        : { goal: "New connections/s >= 5x the stunnel pair's", status: "not measured", detail: why(m, s) },
    );
  }
  return out;
}

const MEASURE_LABEL: Record<MeasureName, string> = {
  single: "throughput, 1 conn",
  parallel: "throughput, parallel",
  latency: "RTT",
  connRate: "new connections",
  idle: "idle connections",
};

function cpuTable(r: Results): string[][] {
  const out: string[][] = [["Measure", "path", "wall s", "client %", "server %", "proxies %", "rest of machine %", "note"]];
  for (const m of Object.keys(MEASURE_LABEL) as MeasureName[]) {
    for (const p of PATHS) {
      const c = r.measures[m]?.[p];
      if (!c || !("cpu" in c)) continue;
      const { cpu } = c;
      const v = c.value as Partial<ThroughputResult & ConnRateResult & IdleResult & LatencyResult>;
      const notes: string[] = [];
      if (cpu.clientPct >= 90) notes.push("client near one core: may be client-bound");
      if (cpu.othersPct >= 25) notes.push("busy machine: disturbed?");
      if (cpu.stealPct >= 5) notes.push(`${cpu.stealPct.toFixed(0)}% stolen by the hypervisor`);
      if (v.capped) notes.push("stopped by the time bound");
      if (v.errors !== undefined && typeof v.errors === "number" && v.errors > 0) notes.push(`${v.errors} errors (last: ${v.lastError})`);
      if (Array.isArray(v.errors) && v.errors.length) notes.push(`errors: ${v.errors.slice(0, 2).join("; ")}`);
      if (m === "idle" && v.stillOpen !== undefined && v.stillOpen < (v.target ?? 0)) notes.push(`${v.stillOpen} of ${v.target} open`);
      out.push([MEASURE_LABEL[m], p, cpu.wallSec.toFixed(1), cpu.clientPct.toFixed(0), cpu.serverPct.toFixed(0), cpu.eachProxyPct.length ? `${cpu.proxiesPct.toFixed(0)} (${cpu.eachProxyPct.map((x) => x.toFixed(0)).join(" + ")})` : "0", cpu.othersPct.toFixed(0), notes.join("; ")]);
    }
  }
  return out;
}

function spread(r: Results): string[] {
  const out: string[] = [];
  for (const [m, unit] of [["single", "MiB/s"], ["parallel", "MiB/s"], ["connRate", "conn/s"]] as const) {
    const parts: string[] = [];
    for (const p of PATHS) {
      const c = r.measures[m]?.[p];
      if (!c || !("value" in c)) continue;
      const v = (c.value as { roundValues?: number[] }).roundValues;
      if (v) parts.push(`${p} ${v.map((x) => x.toFixed(0)).join(", ")}`);
    }
    if (parts.length) out.push(`- ${MEASURE_LABEL[m]} (${unit}): ${parts.join("; ")}`);
  }
  return out;
}

function failures(r: Results): string[] {
  const out: string[] = [];
  for (const p of PATHS) {
    const s = r.setup[p];
    if (s && !s.ok) out.push(`**${p}: setup failed**\n\n\`\`\`\n${s.error}\n\`\`\``);
  }
  for (const m of Object.keys(MEASURE_LABEL) as MeasureName[]) {
    for (const p of PATHS) {
      const c = r.measures[m]?.[p];
      if (c && "error" in c) out.push(`**${p}, ${MEASURE_LABEL[m]}: failed**\n\n\`\`\`\n${c.error}\n\`\`\``);
      if (c && "value" in c) {
        const v = c.value as { errors?: number | string[]; lastError?: string; target?: number; conns?: number };
        if (typeof v.errors === "number" && v.errors > 0)
          out.push(`**${p}, ${MEASURE_LABEL[m]}: ${v.errors} connection(s) failed${v.target ? ` of ${v.target}` : ""}** (the figure counts only the others); last error: \`${v.lastError}\``);
        if (Array.isArray(v.errors) && v.errors.length) out.push(`**${p}, ${MEASURE_LABEL[m]}: ${v.errors.length} connection(s) failed**: \`${v.errors.slice(0, 3).join("; ")}\``);
      }
    }
  }
  return out;
}

export function renderReport(r: Results): { table: string; markdown: string } {
  const g = grid(r);
  const gl = goals(r);
  const goalText = gl.map((x) => `${x.status === "met" ? "MET" : x.status === "not met" ? "NOT MET" : "NOT MEASURED"}: ${x.goal} (${x.detail})`).join("\n");
  const fails = failures(r);
  const table = [textTable(g), "", "Goals:", goalText, ...(fails.length ? ["", "Failures and errors:", ...fails.map((f) => f.replace(/\*\*/g, "").split("\n")[0]!)] : [])].join("\n");
  const M = r.machine;
  const P = r.params;
  const markdown = [
    "# Benchmark results",
    "",
    "Generated by the benchmark itself; re-run to refresh:",
    "",
    "```",
    "bash bench/run.sh",
    "```",
    "",
    `- Date: ${r.date}`,
    `- Machine: ${M.nproc} CPUs (nproc), ${M.cpu}, ${M.memGiB} GiB RAM, Linux ${M.kernel}`,
    `- Node ${M.node}; ${M.stunnel}; ${M.openssl}`,
    `- Open-file limit: ${M.nofile}; tree: ${M.commit}`,
    `- Machine busy before the run: ${(M.busyAtStartPct ?? NaN).toFixed(0)}% of one core (other processes)`,
    `- Whole run: ${r.totalSec.toFixed(0)} s`,
    "",
    "Everything runs on this one machine, on loopback: the load generator (one Node process),",
    "the bench server (one Node process) and the proxies all share these CPUs.",
    "",
    "## Results",
    "",
    mdTable(g),
    "",
    "`-` = path not set up, `n/a` = not applicable, `FAILED` = see Failures below.",
    "Ratios are plain quotients of the two columns (for latency and memory, lower is better).",
    "",
    "## Goals",
    "",
    "| Goal | Status | Figures |",
    "|---|---|---|",
    ...gl.map((x) => `| ${x.goal} | ${x.status === "met" ? "**met**" : x.status === "not met" ? "**not met**" : "not measured"} | ${x.detail} |`),
    "",
    ...(gl.some((x) => x.status === "not met") ? [...WHY_NOT_MET.split("\n"), ""] : []),
    "## CPU during each measure",
    "",
    `Percent of one core over the measure's wall time (the machine has ${M.nproc}). "client" is the`,
    "load generator, \"server\" the bench server, \"proxies\" both stunnel processes (client + server) or both",
    "agents (node-a + node-b): the client side + the server side; \"rest of",
    "machine\" is all other busy time (other processes, and kernel work such as softirq not charged to ours):",
    "when it is large, something else was running and the figure is suspect.",
    "",
    mdTable(cpuTable(r)),
    "",
    "## Rounds",
    "",
    "Every round's figure, to show how steady the machine was:",
    "",
    ...spread(r),
    "",
    "## Parameters",
    "",
    `- Throughput: 1 connection pushing ${fmtBytes(P.single.bytes)}, and ${P.parallel.conns} connections pushing ${fmtBytes(P.parallel.perConn)} each at once,`,
    "  one direction, to a sink that acknowledges when every byte arrived (time = first byte written to acknowledgement).",
    "  3 rounds, alternating between the paths; the table shows the median round (all rounds below).",
    `- RTT: ${P.latency.n} round trips of ${P.latency.size} B, one at a time, in 4 rounds that alternate between the paths`,
    `  (each round on a new connection, after ${P.latency.warm / 4} unrecorded round trips); percentiles over all rounds.`,
    "  \"Added\" latency is the path's percentile minus direct TCP's.",
    `- New connections: ${P.connRate.concurrency} loops of connect, 16 B echo, the server closes, the client closes, for ${P.connRate.durMs / 1000} s;`,
    "  3 rounds alternating between the paths, median round shown.",
    "  For the mesh the SOCKS5 handshake is part of each connection (that is how this mode is used). The server closes",
    "  first so that TIME_WAIT lands on its side: the mesh's client binds its workload IP before connecting, and a",
    "  bound source port in TIME_WAIT cannot be bound again for 60 s (idle connections are torn down the same way).",
    `- Idle memory (measured first, right after the warm-up): ${P.idle.n} connections opened through the path (each carries`,
    "  a 1-byte echo), left idle 2 s, then the VmRSS of the proxy processes (and their children) is read from /proc;",
    "  per connection = (after - before) / open connections.",
    ...(P.idle.n < 10_000
      ? [
          `  ${P.idle.n} rather than 10,000: the open-file limit of this run is ${M.nofile};`,
          "  stunnel admits nofile x 125/256 clients per process (two descriptors per connection), and agent A's SOCKS5",
          "  listener may hold a quarter of its data path's descriptors (the limit minus a tenth; packages/ztunnel/src/fd-limit.ts),",
          "  so that local clients cannot take what captured and inbound traffic need. Both paths hold the same number.",
        ]
      : []),
    "- Before measuring, every path carries 64 MiB and 500 round trips (warm-up).",
    "- Mesh: two `ztunnel run` agents as `startLoopbackMesh` (@zt/harness) starts them, with `bench/workloads.yaml`;",
    "  their JSON logs (one access-log line per connection) are read and dropped by the bench, keeping a short tail;",
    "  `HBONE_MAX_STREAMS_PER_IDENTITY=20000`, since the one client identity holds every idle connection (default cap 2,048);",
    `  ZTUNNEL_WORKER_THREADS=${process.env["BENCH_WORKERS"] ?? "2"} data-path workers per agent (BENCH_WORKERS; the agents' default is 2).`,
    "- \"per proxy CPU-second\": the figure divided by the proxies' CPU share during the measure (how much they get",
    "  done per CPU-second they burn; on a small machine, where every path is CPU-bound, this is the fairer comparison).",
    "- stunnel: two stunnel4 processes (threaded, one thread per connection), TLS 1.3 only, client certificate",
    "  required and verified, ECDSA P-256 leaves from an ad-hoc RSA-2048 CA (as the mesh's workload certificates and root),",
    "  TCP_NODELAY both sides, stunnel's defaults otherwise (including TLS session resumption on the client side).",
    "",
    ...(fails.length ? ["## Failures and errors", "", ...fails.flatMap((f) => [f, ""])] : []),
    ...(r.setup.stunnelLog ? ["## stunnel warnings", "", "```", r.setup.stunnelLog, "```", ""] : []),
  ].join("\n");
  return { table, markdown };
}

/** Why the goals that are not met are not, from the profiles and the other benches (kept true by hand). */
const WHY_NOT_MET = `Why the goals are not met (the figures behind this are in the sections below): on this machine every path is
bound by CPU, and the mesh spends about twice the stunnel pair's CPU per byte ("Data-path workers"), so data-path
workers cannot add throughput here. Of an agent's CPU per GiB, TLS and the kernel's socket work are what stunnel pays too;
the rest, about two fifths, is Node's own data path: its stream and HTTP/2 bindings, JavaScript, V8's garbage collection of a
Buffer per chunk, and a copy of every write into one buffer before TLS ("Where a GiB's CPU goes"). A new connection costs a
SOCKS5 exchange, an HTTP/2 CONNECT on both agents, two access-log lines and a socket in each agent; the round trip adds
four event-loop passes, each slower than a stunnel thread's hop (same section).`;
