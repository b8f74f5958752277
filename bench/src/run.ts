/**
 * The benchmark runner (`bash bench/run.sh`): direct TCP, a stunnel pair and the mesh,
 * measured side by side in one run, each measure taken on the three paths in turn.
 */
import { execFileSync, spawnSync, type ChildProcess } from "node:child_process";
import { startBenchServer } from "./bench-server.js";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import {
  connRate,
  idleMemory,
  latencySamples,
  medianRound,
  preflight,
  summarizeLatency,
  tcpOpen,
  throughput,
  type ConnRateResult,
  type LatencySamples,
  type Open,
  type ThroughputResult,
} from "./load.js";
import { startMesh, SERVER_IP, type Mesh } from "./mesh.js";
import { cpuSeconds, machineCpuSeconds, selfCpuSeconds, treeCpuSeconds } from "./procfs.js";
import { renderReport, type Cell, type Cpu, type MeasureName, type PathName, type Results } from "./report.js";
import { startStunnelPair, STUNNEL_BIN, type StunnelPair } from "./stunnel.js";
import { errMsg, openFilesLimit } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
/** BENCH_PATHS=direct,mesh runs only those paths (for trying things out). */
const ONLY = new Set((process.env["BENCH_PATHS"] ?? "direct,stunnel,mesh").split(","));
const GiB = 1 << 30;
const MiB = 1 << 20;
const nofile = openFilesLimit();
// stunnel (threaded) admits nofile*125/256 clients per process, and holds 2 fds per
// connection; the agents and this process hold about one per connection, but agent A's
// SOCKS5 listener may hold only a quarter of its data path's descriptors (the limit minus a
// tenth: packages/ztunnel/src/fd-limit.ts), less a margin for the warm-up's connections.
const STUNNEL_MAX = Math.floor((nofile * 125) / 256 / 100) * 100;
const SOCKS5_MAX = Math.floor((nofile * 0.9 * 0.25 - 100) / 100) * 100;
const IDLE_N = QUICK ? 1000 : Math.min(10_000, STUNNEL_MAX, SOCKS5_MAX);

const P = {
  single: { bytes: QUICK ? 128 * MiB : GiB, capMs: 30_000 },
  parallel: { conns: 16, perConn: QUICK ? 16 * MiB : 128 * MiB, capMs: 40_000 },
  latency: { warm: QUICK ? 500 : 2000, n: QUICK ? 2000 : 20_000, size: 1024, capMs: 30_000 },
  connRate: { concurrency: 32, durMs: QUICK ? 1000 : 2000, maxCount: 200_000 },
  idle: { n: IDLE_N, concurrency: 256, capMs: 90_000, settleMs: 2000 },
};

function log(s: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
}

async function startServer(): Promise<{ proc: ChildProcess; directPort: number; meshPort: number }> {
  const { proc, ports } = await startBenchServer(["127.0.0.1:0", `${SERVER_IP}:0`]);
  return { proc, directPort: ports[0]!, meshPort: ports[1]! };
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
  } catch (e) {
    const out = (e as { stderr?: Buffer; stdout?: Buffer }).stderr?.toString() ?? "";
    return out.trim() || errMsg(e);
  }
}

interface PathEntry {
  readonly name: PathName;
  readonly open: Open;
  readonly proxyPids: readonly number[];
}

async function main(): Promise<number> {
  const started = Date.now();
  const repo = fileURLToPath(new URL("../../", import.meta.url));
  const results: Results = {
    date: new Date().toISOString(),
    machine: {
      nproc: os.availableParallelism(),
      cpu: os.cpus()[0]?.model ?? "?",
      memGiB: Math.round(os.totalmem() / GiB),
      kernel: os.release(),
      node: process.version,
      stunnel: /stunnel \S+/.exec(spawnSync(STUNNEL_BIN, ["-version"]).stderr?.toString() ?? "")?.[0] ?? "stunnel ?",
      openssl: sh("openssl", ["version"]),
      nofile,
      commit: `${sh("git", ["-C", repo, "rev-parse", "--short", "HEAD"])}${sh("git", ["-C", repo, "status", "--porcelain", "packages"]) ? " (+ uncommitted changes in packages/)" : ""}`,
    },
    params: { ...P, quick: QUICK },
    setup: {},
    measures: {},
    totalSec: 0,
  };

  // How busy is the machine before we start? (Others' test runs on a shared box skew everything.)
  const m0 = machineCpuSeconds();
  await new Promise((r) => setTimeout(r, 1000));
  const busyAtStart = (machineCpuSeconds().busy - m0.busy) * 100;
  results.machine.busyAtStartPct = busyAtStart;
  if (busyAtStart > 20) log(`warning: the machine is already busy (${busyAtStart.toFixed(0)}% of one core in the last second): figures will be disturbed`);

  const server = await startServer();
  log(`bench server pid ${server.proc.pid}: 127.0.0.1:${server.directPort}, ${SERVER_IP}:${server.meshPort}`);
  const paths: PathEntry[] = [];
  let stunnel: StunnelPair | undefined;
  let mesh: Mesh | undefined;
  try {
    // 1. direct (always: the others are compared with it)
    const direct = tcpOpen("127.0.0.1", server.directPort);
    try {
      await preflight(direct);
      paths.push({ name: "direct", open: direct, proxyPids: [] });
      results.setup.direct = { ok: true };
    } catch (e) {
      results.setup.direct = { ok: false, error: errMsg(e) };
    }
    // 2. stunnel pair
    if (ONLY.has("stunnel")) try {
      const pair = await startStunnelPair(server.directPort, (port) => preflight(tcpOpen("127.0.0.1", port), 1024));
      stunnel = pair;
      const open = tcpOpen("127.0.0.1", pair.port);
      await preflight(open);
      paths.push({ name: "stunnel", open, proxyPids: pair.pids });
      results.setup.stunnel = { ok: true, detail: `pids ${pair.pids.join(", ")}, accept 127.0.0.1:${pair.port}` };
      log(`stunnel pair up: pids ${pair.pids.join(", ")}`);
    } catch (e) {
      results.setup.stunnel = { ok: false, error: errMsg(e) };
      log(`stunnel pair FAILED: ${errMsg(e)}`);
    }
    // 3. mesh
    if (ONLY.has("mesh")) try {
      // One client identity holds every idle connection (4,400 at an open-file limit of 20,000), above the default cap of
      // 2,048 streams per peer identity at the destination's agent: raised for this measure.
      // BENCH_AGENT_ENV="K=V K2=V2": more environment for the agents (for trying settings out).
      const extra = Object.fromEntries((process.env["BENCH_AGENT_ENV"] ?? "").split(" ").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
      mesh = await startMesh({ env: { HBONE_MAX_STREAMS_PER_IDENTITY: "20000", ZTUNNEL_WORKER_THREADS: process.env["BENCH_WORKERS"] ?? "2", ...extra } });
      const m = mesh;
      const open: Open = () => m.open(server.meshPort);
      try {
        await preflight(open);
      } catch (e) {
        throw new Error(`preflight echo through the mesh failed: ${errMsg(e)}\n${m.tails()}`);
      }
      paths.push({ name: "mesh", open, proxyPids: m.pids });
      results.setup.mesh = { ok: true, detail: `agent pids ${m.pids.join(", ")}` };
      log(`mesh up: agent pids ${m.pids.join(", ")}`);
    } catch (e) {
      results.setup.mesh = { ok: false, error: errMsg(e) };
      log(`mesh FAILED: ${errMsg(e)}`);
    }

    // Warm-up: a little traffic on every path (JIT, TLS sessions, pools).
    for (const p of paths) {
      try {
        await throughput(p.open, 1, 64 * MiB, 20_000);
        await latencySamples(p.open, { warm: 0, n: 500, size: 1024, capMs: 5000 });
      } catch (e) {
        log(`warm-up on ${p.name} failed: ${errMsg(e)}`);
      }
    }

    // Each measure runs on the three paths in turn, in rounds that alternate between the paths
    // so that a slow spell of the machine (this box may be shared) does not land on one path
    // only; throughput and connection rate report the median round, RTT pools the rounds.
    const LAT_ROUNDS = 4;
    const ROUNDS = 3;
    const measures: { key: MeasureName; what: string; rounds: number; run(p: PathEntry): Promise<unknown>; merge(parts: unknown[]): unknown }[] = [
      // Idle memory first, on proxies that have only carried the warm-up: after the throughput
      // runs their heaps are grown and new connections would reuse freed memory.
      { key: "idle", what: `${P.idle.n} idle connections`, rounds: 1, run: (p) => (p.name === "direct" ? Promise.resolve(undefined) : idleMemory(p.open, p.proxyPids, () => server.proc.send("closeAll"), P.idle)), merge: (x) => x[0] },
      {
        key: "single",
        what: `throughput, 1 connection, ${P.single.bytes / MiB} MiB: ${ROUNDS} rounds, paths alternating, median`,
        rounds: ROUNDS,
        run: (p) => throughput(p.open, 1, P.single.bytes, P.single.capMs),
        merge: (x) => medianRound(x as ThroughputResult[], (v) => v.mibPerSec),
      },
      {
        key: "parallel",
        what: `throughput, ${P.parallel.conns} connections x ${P.parallel.perConn / MiB} MiB: ${ROUNDS} rounds, paths alternating, median`,
        rounds: ROUNDS,
        run: (p) => throughput(p.open, P.parallel.conns, P.parallel.perConn, P.parallel.capMs),
        merge: (x) => medianRound(x as ThroughputResult[], (v) => v.mibPerSec),
      },
      {
        key: "latency",
        what: `round trips of ${P.latency.size} B: ${LAT_ROUNDS} rounds of ${P.latency.n / LAT_ROUNDS} after ${P.latency.warm / LAT_ROUNDS} warm-up, paths alternating`,
        rounds: LAT_ROUNDS,
        run: (p) => latencySamples(p.open, { warm: P.latency.warm / LAT_ROUNDS, n: P.latency.n / LAT_ROUNDS, size: P.latency.size, capMs: P.latency.capMs / LAT_ROUNDS }),
        merge: (x) => summarizeLatency(x as LatencySamples[]),
      },
      {
        key: "connRate",
        what: `new connections (connect, 16 B echo, server closes, client closes), concurrency ${P.connRate.concurrency}: ${ROUNDS} rounds of ${P.connRate.durMs / 1000} s, paths alternating, median`,
        rounds: ROUNDS,
        run: (p) => connRate(p.open, P.connRate),
        merge: (x) => medianRound(x as ConnRateResult[], (v) => v.perSec),
      },
    ];
    for (const m of measures) {
      log(`== ${m.what}`);
      const acc = new Map(paths.map((p) => [p.name, { parts: [] as unknown[], wall: 0, self: 0, server: 0, proxies: 0, each: [] as number[], busy: 0, steal: 0, error: undefined as string | undefined, na: false }]));
      for (let round = 0; round < m.rounds; round++) {
        for (const p of paths) {
          const a = acc.get(p.name)!;
          if (a.error !== undefined || a.na) continue;
          const before = { wall: performance.now(), self: selfCpuSeconds(), server: cpuSeconds(server.proc.pid!), proxies: treeCpuSeconds(p.proxyPids), each: p.proxyPids.map((x) => treeCpuSeconds([x])), machine: machineCpuSeconds() };
          try {
            const part = await m.run(p);
            if (part === undefined) {
              a.na = true;
              continue;
            }
            a.parts.push(part);
            a.wall += (performance.now() - before.wall) / 1000;
            a.self += selfCpuSeconds() - before.self;
            a.server += cpuSeconds(server.proc.pid!) - before.server;
            a.proxies += treeCpuSeconds(p.proxyPids) - before.proxies;
            p.proxyPids.forEach((x, i) => (a.each[i] = (a.each[i] ?? 0) + treeCpuSeconds([x]) - before.each[i]!));
            const machine = machineCpuSeconds();
            a.busy += machine.busy - before.machine.busy;
            a.steal += machine.steal - before.machine.steal;
          } catch (e) {
            const tail = p.name === "mesh" && mesh ? `\n${mesh.tails()}` : p.name === "stunnel" && stunnel ? `\n${stunnel.stderr().slice(-2000)}` : "";
            a.error = errMsg(e) + tail;
            log(`   ${p.name.padEnd(8)} FAILED: ${errMsg(e)}`);
          }
        }
      }
      const out: Partial<Record<PathName, Cell>> = {};
      for (const p of paths) {
        const a = acc.get(p.name)!;
        if (a.error !== undefined) out[p.name] = { error: a.error };
        else if (a.na) out[p.name] = { na: true };
        else {
          const value = m.merge(a.parts);
          const pct = (x: number): number => (x / a.wall) * 100;
          const cpu: Cpu = {
            wallSec: a.wall,
            clientPct: pct(a.self),
            serverPct: pct(a.server),
            proxiesPct: pct(a.proxies),
            eachProxyPct: a.each.map(pct),
            // Everything else the machine did meanwhile (other processes, and kernel work not
            // charged to ours, such as softirq time): a large figure means a disturbed measure.
            othersPct: Math.max(0, pct(a.busy - a.self - a.server - a.proxies)),
            stealPct: pct(a.steal),
          };
          out[p.name] = { value, cpu };
          log(`   ${p.name.padEnd(8)} ${JSON.stringify(value)}  (${a.wall.toFixed(1)} s; cpu client ${cpu.clientPct.toFixed(0)}%, server ${cpu.serverPct.toFixed(0)}%, proxies ${cpu.proxiesPct.toFixed(0)}%${cpu.eachProxyPct.length ? ` (${cpu.eachProxyPct.map((x) => x.toFixed(0)).join("+")})` : ""}, rest of machine ${cpu.othersPct.toFixed(0)}%)`);
        }
      }
      results.measures[m.key] = out;
    }
    if (stunnel) {
      const warn = stunnel.stderr().trim();
      if (warn) results.setup.stunnelLog = warn.split("\n").slice(-20).join("\n");
    }
  } finally {
    const stops: Promise<unknown>[] = [];
    if (mesh) stops.push(mesh.stop().catch(() => {}));
    if (stunnel) stops.push(stunnel.stop().catch(() => {}));
    await Promise.all(stops);
    server.proc.kill("SIGTERM");
  }
  results.totalSec = (Date.now() - started) / 1000;

  const { table, markdown } = renderReport(results);
  process.stdout.write(`\n${table}\n`);
  const benchDir = fileURLToPath(new URL("../", import.meta.url));
  // A quick run (BENCH_QUICK=1, for trying the bench out) does not replace RESULTS.md.
  const md = QUICK ? "bench/out/RESULTS.quick.md" : "bench/RESULTS.md";
  mkdirSync(`${benchDir}out`, { recursive: true });
  // The other benchmarks' sections (bench/capture.sh, bench/handover.sh, bench/resilience.sh: between their
  // <!-- name:begin --> and <!-- name:end --> markers) survive a rewrite of the file.
  const mdPath = `${benchDir}${md.slice("bench/".length)}`;
  const sections = (existsSync(mdPath) ? readFileSync(mdPath, "utf8") : "").match(/<!-- ([\w-]+):begin -->[\s\S]*?<!-- \1:end -->/g) ?? [];
  writeFileSync(mdPath, sections.length ? `${markdown.trimEnd()}\n\n${sections.join("\n\n")}\n` : markdown);
  writeFileSync(`${benchDir}out/results.json`, JSON.stringify(results, null, 2));
  log(`wrote ${md} and bench/out/results.json (${results.totalSec.toFixed(0)} s in all)`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
