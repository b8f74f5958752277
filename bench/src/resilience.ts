/**
 * Resilience benchmark (`bash bench/resilience.sh`), from issue 8. Two measures, each on its
 * own pair of `ztunnel run` agents on loopback net 74 (node-a = agent A, the source side;
 * node-b = agent B, the destination side), clients through A's SOCKS5, an echo server (a
 * child process, bench/src/server.ts) on the destination workload's IP:
 *
 *   held       N connections (10,000 where the open-file limit allows) opened, each with a
 *              1-byte echo, held 60 s idle, then closed: both agents' RSS, descriptors and CPU,
 *              sampled every second from /proc, and what they say on /metrics.
 *   peer kill  1,000 idle connections, then agent B (or A) SIGKILLed: for every connection, the
 *              time until its far end got a reset (the clients when B dies, the echo server's
 *              upstream sockets when A dies), and how the connections ended at both ends.
 *
 * A benchmark, not a test: it asserts nothing. It writes its section of bench/RESULTS.md
 * (between the resilience markers) and raw figures to bench/out/resilience.json.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { preflight } from "./load.js";
import { startMesh } from "./mesh.js";
import { cpuSeconds, machineCpuSeconds, selfCpuSeconds } from "./procfs.js";
import { machineInfo, renderResilience, type HeldResult, type KillFigures, type ResilienceResults, type Side } from "./resilience-report.js";
import { ask, startBenchServer, type Ending } from "./bench-server.js";
import { HELD_CLIENT_IPS, HELD_NODES, HELD_SOURCES, log, metric, NET, nowMs, openHeld, othersPct, scrape, SERVER_IP, snapshotter, WORKLOADS, type Snapshot } from "./resilience-support.js";
import { errMsg, openFilesLimit, percentile, sleep, writeResultsSection } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
/** node-a's client workloads of resilience-workloads.yaml: one identity each. */
const CLIENT_IPS = Array.from({ length: 8 }, (_, i) => `127.74.1.${11 + i}`);
/** packages/ztunnel/src/fd-limit.ts gives the SOCKS5 listener a quarter of the data path's descriptors. */
const SOCKS5_SHARE = 0.25;
/** Kept below that share: the preflight connections, and room for a late close. */
const SOCKS5_MARGIN = 100;

export const P = {
  held: { target: QUICK ? 1000 : 10_000, baselineMs: QUICK ? 5000 : 15_000, holdMs: QUICK ? 10_000 : 60_000, settleMs: 5000, afterCloseSec: 60, concurrency: 256, capMs: 120_000 },
  kill: { conns: QUICK ? 200 : 1000, rounds: QUICK ? 1 : 3, idleMs: 1000, waitMs: 10_000, concurrency: 128 },
  quick: QUICK,
};

// ---- 1. held connections ----

async function held(serverProc: ChildProcess, port: number): Promise<HeldResult> {
  const mesh = await startMesh({ net: NET, workloadsFile: WORKLOADS, nodes: HELD_NODES });
  try {
    log(`held: agents A ${mesh.pids[0]}, B ${mesh.pids[1]}, C ${mesh.pids[2]}, D ${mesh.pids[3]}`);
    for (const ip of HELD_CLIENT_IPS) await preflight(() => mesh.open(port, ip, SERVER_IP), 1024);
    const capacity = metric(await mesh.metrics(0), "ztunnel_data_path_descriptors", 'state="capacity"');
    const socks5Cap = Math.floor(capacity * SOCKS5_SHARE);
    const sources = HELD_SOURCES.length;
    const n = Math.min(P.held.target, sources * Math.floor((socks5Cap - SOCKS5_MARGIN) / 100) * 100);
    if (n < P.held.target) log(`held: ${n} connections, not ${P.held.target}: each source agent's SOCKS5 listener may hold ${socks5Cap} (a quarter of ${capacity} data-path descriptors; open-file limit ${openFilesLimit()})`);

    const snap = snapshotter(mesh.pids, serverProc.pid!);
    const samples: Snapshot[] = [];
    const sampler = setInterval(() => samples.push(snap()), 1000);
    const marks: HeldResult["marks"] = {};
    const metrics: HeldResult["metrics"] = {};
    const mark = async (name: string, withMetrics = false): Promise<Snapshot> => {
      const s = snap();
      marks[name] = { t: s.t, agents: s.agents };
      if (withMetrics) metrics[name] = await scrape(mesh);
      return s;
    };
    try {
      // The agents' CPU with no connection at all, to compare with their CPU while holding.
      await sleep(2000);
      const idleStart = await mark("idleStart");
      await sleep(P.held.baselineMs);
      const idleEnd = await mark("before", true);
      log(`held: opening ${n} connections (concurrency ${P.held.concurrency})`);
      const set = await openHeld(mesh, { port, from: HELD_CLIENT_IPS, to: SERVER_IP, n, concurrency: P.held.concurrency, capMs: P.held.capMs });
      try {
        const opened = set.socks.length;
        const afterOpen = await mark("afterOpen", true);
        log(`held: ${opened} open in ${(set.openMs / 1000).toFixed(1)} s (${set.errors} failed${set.lastError ? `, last: ${set.lastError}` : ""}); holding ${P.held.holdMs / 1000} s`);
        await sleep(Math.max(0, afterOpen.t * 1000 + P.held.settleMs - snap().t * 1000));
        const holdStart = await mark("holdStart");
        await sleep(Math.max(0, afterOpen.t * 1000 + P.held.holdMs - snap().t * 1000));
        const holdEnd = await mark("atHoldEnd");
        metrics["atHoldEnd"] = await scrape(mesh);
        const endedDuringHold = set.endings.length;
        const window = holdEnd.t - holdStart.t;
        const pct = (f: (s: Snapshot) => number): number => ((f(holdEnd) - f(holdStart)) / window) * 100;
        // Per-second CPU of each agent over the hold: the busiest second and the median one.
        const seconds = mesh.pids.map((_, i) => {
          const xs = samples.filter((s) => s.t >= holdStart.t && s.t <= holdEnd.t);
          const v = new Float64Array(Math.max(0, xs.length - 1));
          for (let k = 1; k < xs.length; k++) v[k - 1] = ((xs[k]!.agents[i]!.cpuSec - xs[k - 1]!.agents[i]!.cpuSec) / (xs[k]!.t - xs[k - 1]!.t)) * 100;
          return { max: percentile(v, v.length, 100), median: percentile(v, v.length, 50) };
        });

        // Close: the server closes first (TIME_WAIT on its side), the FINs come back through the mesh.
        log("held: closing (the server closes first)");
        const c0 = performance.now();
        serverProc.send("closeAll");
        while (set.open() > 0 && performance.now() - c0 < 30_000) await sleep(100);
        const closeMs = performance.now() - c0;
        const stillOpenAfterClose = set.open();
        set.destroyAll();
        const closed = await mark("closed");
        // Every second from /proc; /metrics only at the end (a scrape allocates, and would move the agent's garbage collections).
        for (let k = 1; k <= P.held.afterCloseSec; k++) {
          await sleep(Math.max(0, closed.t * 1000 + k * 1000 - snap().t * 1000));
          await mark(`close+${k}`, k === P.held.afterCloseSec);
        }
        const howClosed: Record<string, number> = {};
        for (const e of set.endings.slice(endedDuringHold)) howClosed[e.how] = (howClosed[e.how] ?? 0) + 1;
        return {
          target: P.held.target,
          n,
          socks5Cap,
          sources,
          identities: HELD_CLIENT_IPS.length,
          dataPathCapacity: capacity,
          opened,
          errors: set.errors,
          ...(set.lastError !== undefined ? { lastError: set.lastError } : {}),
          openMs: set.openMs,
          endedDuringHold,
          closeMs,
          stillOpenAfterClose,
          howClosed,
          holdWindowSec: window,
          baselineCpuPct: mesh.pids.map((_, i) => ((idleEnd.agents[i]!.cpuSec - idleStart.agents[i]!.cpuSec) / (idleEnd.t - idleStart.t)) * 100),
          idleCpuPct: mesh.pids.map((_, i) => pct((s) => s.agents[i]!.cpuSec)),
          maxSecondCpuPct: seconds.map((x) => x.max),
          medianSecondCpuPct: seconds.map((x) => x.median),
          clientCpuPct: pct((s) => s.selfCpu),
          serverCpuPct: pct((s) => s.serverCpu),
          othersPct: othersPct(holdStart, holdEnd),
          marks,
          metrics,
          samples: samples.map((s) => ({ t: s.t, agents: s.agents })),
        };
      } finally {
        set.destroyAll();
      }
    } finally {
      clearInterval(sampler);
    }
  } catch (e) {
    throw new Error(`${errMsg(e)}\n${mesh.tails()}`);
  } finally {
    await mesh.stop();
  }
}

// ---- 2. a peer agent SIGKILLed ----

function side(endings: readonly Ending[], stillOpen: number, killMs: number): Side {
  const resets = endings.filter((e) => e.how === "reset");
  const times = Float64Array.from(resets, (e) => e.ms - killMs);
  const codes: Record<string, number> = {};
  for (const e of endings) if (e.how === "other") codes[e.code ?? "?"] = (codes[e.code ?? "?"] ?? 0) + 1;
  return {
    resets: resets.length,
    fins: endings.filter((e) => e.how === "fin").length,
    other: endings.length - resets.length - endings.filter((e) => e.how === "fin").length,
    otherCodes: codes,
    stillOpen,
    minMs: percentile(times, times.length, 0),
    p50Ms: percentile(times, times.length, 50),
    p99Ms: percentile(times, times.length, 99),
    maxMs: percentile(times, times.length, 100),
  };
}

/** One round: a fresh pair of agents, `conns` idle connections, then agent `victim` (0 = A, 1 = B) SIGKILLed. */
async function killRound(serverProc: ChildProcess, port: number, victim: 0 | 1): Promise<KillFigures> {
  const mesh = await startMesh({ net: NET, workloadsFile: WORKLOADS });
  try {
    await preflight(() => mesh.open(port, CLIENT_IPS[0]!, SERVER_IP), 1024);
    const set = await openHeld(mesh, { port, from: CLIENT_IPS, to: SERVER_IP, n: P.kill.conns, concurrency: P.kill.concurrency, capMs: 60_000 });
    try {
      const watching = (await ask<{ watching: number }>(serverProc, "watch")).watching;
      const snap = snapshotter(mesh.pids, serverProc.pid!);
      const s0 = snap();
      await sleep(P.kill.idleMs);
      const survivor = mesh.pids[1 - victim]!;
      const exited = new Promise<number>((resolve) => mesh.procs[victim]!.once("exit", () => resolve(nowMs())));
      const cpuAtKill = { survivor: cpuSeconds(survivor), self: selfCpuSeconds() };
      const killMs = nowMs();
      mesh.procs[victim]!.kill("SIGKILL");
      // Poll the count only (cheap): the endings, with their times, are fetched once at the end.
      const serverOpen = async (): Promise<number> => (await ask<{ open: number }>(serverProc, "watchedOpen")).open;
      let open = await serverOpen();
      while ((set.open() > 0 || open > 0) && nowMs() - killMs < P.kill.waitMs) {
        await sleep(100);
        open = await serverOpen();
      }
      const doneMs = nowMs();
      const cpuAtDone = { survivor: cpuSeconds(survivor), self: selfCpuSeconds() };
      const server = await ask<{ open: number; endings: Ending[] }>(serverProc, "watched");
      const exitMs = (await exited) - killMs;
      const s1 = snap();
      // The killed agent's CPU cannot be read any more: count the survivor only (the killed one ran until the kill).
      const ours = s1.selfCpu - s0.selfCpu + (s1.serverCpu - s0.serverCpu) + (cpuSeconds(survivor) - s0.agents[1 - victim]!.cpuSec);
      const others = Math.max(0, ((s1.machineBusy - s0.machineBusy - ours) / (s1.t - s0.t)) * 100);
      return {
        victim: victim === 0 ? "A" : "B",
        conns: set.socks.length,
        openErrors: set.errors,
        ...(set.lastError !== undefined ? { lastError: set.lastError } : {}),
        watching,
        endedBeforeKill: set.endings.filter((e) => e.ms < killMs).length,
        clients: side(set.endings, set.open(), killMs),
        servers: side(server.endings, server.open, killMs),
        waitedMs: doneMs - killMs,
        exitMs,
        survivorCpuMs: (cpuAtDone.survivor - cpuAtKill.survivor) * 1000,
        clientCpuMs: (cpuAtDone.self - cpuAtKill.self) * 1000,
        othersPct: others,
      };
    } finally {
      set.destroyAll();
      serverProc.send("closeAll");
    }
  } catch (e) {
    throw new Error(`${errMsg(e)}\n${mesh.tails()}`);
  } finally {
    await mesh.stop();
  }
}

// ---- main ----

async function main(): Promise<void> {
  const started = Date.now();
  const m0 = machineCpuSeconds();
  await sleep(1000);
  const busyAtStartPct = (machineCpuSeconds().busy - m0.busy) * 100;
  if (busyAtStartPct > 20) log(`warning: the machine is already busy (${busyAtStartPct.toFixed(0)}% of one core in the last second): figures will be disturbed`);
  const results: ResilienceResults = { date: new Date().toISOString(), machine: { ...machineInfo(), busyAtStartPct, nofile: openFilesLimit() }, params: P, kill: [], totalSec: 0 };
  const { proc, ports } = await startBenchServer([`${SERVER_IP}:0`]);
  const server = { proc, port: ports[0]! };
  log(`bench server pid ${server.proc.pid}: ${SERVER_IP}:${server.port}`);
  try {
    try {
      results.held = await held(server.proc, server.port);
      const h = results.held;
      log(`held: idle CPU A ${h.idleCpuPct[0]!.toFixed(2)}%, B ${h.idleCpuPct[1]!.toFixed(2)}%; rest of machine ${h.othersPct.toFixed(0)}%`);
    } catch (e) {
      results.heldError = errMsg(e);
      log(`held FAILED: ${errMsg(e)}`);
    }
    await sleep(2000);
    // Rounds alternate between the two victims, so that a busy spell of the machine does not land on one.
    for (let r = 0; r < P.kill.rounds; r++) {
      for (const victim of [1, 0] as const) {
        try {
          const k = await killRound(server.proc, server.port, victim);
          results.kill.push(k);
          const far = victim === 1 ? k.clients : k.servers;
          log(`kill ${k.victim}, round ${r + 1}: ${far.resets} of ${k.conns} reset, p50 ${far.p50Ms.toFixed(1)} ms, p99 ${far.p99Ms.toFixed(1)} ms, max ${far.maxMs.toFixed(1)} ms; FIN ${far.fins}, other ${far.other}, still open ${far.stillOpen}; rest of machine ${k.othersPct.toFixed(0)}%`);
        } catch (e) {
          results.kill.push({ victim: victim === 0 ? "A" : "B", error: errMsg(e) });
          log(`kill ${victim === 0 ? "A" : "B"}, round ${r + 1} FAILED: ${errMsg(e)}`);
        }
        await sleep(1000);
      }
    }
  } finally {
    server.proc.kill("SIGTERM");
  }
  results.totalSec = (Date.now() - started) / 1000;
  const busiest = Math.max(results.held?.othersPct ?? 0, ...results.kill.map((k) => ("othersPct" in k ? k.othersPct : 0)));
  if (busiest > 25) log(`warning: something else used up to ${busiest.toFixed(0)}% of a core during the measures: consider a re-run`);

  const section = renderResilience(results);
  process.stdout.write(`\n${section}\n`);
  const benchDir = fileURLToPath(new URL("../", import.meta.url));
  mkdirSync(`${benchDir}out`, { recursive: true });
  writeFileSync(`${benchDir}out/resilience.json`, JSON.stringify(results, null, 2));
  // A quick run (BENCH_QUICK=1) does not touch RESULTS.md.
  writeResultsSection("resilience", section, QUICK);
  log(`wrote ${QUICK ? "bench/out/RESULTS.resilience.quick.md" : "bench/RESULTS.md"} and bench/out/resilience.json (${results.totalSec.toFixed(0)} s in all)`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`resilience bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
