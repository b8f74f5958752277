/**
 * The idle-connection memory measure of `run.ts` alone, on the mesh only, split by agent
 * (A: the source side, B: the destination side) and into V8 heap and the rest of RSS:
 *
 *   ulimit -n 20000; node bench/dist/idle.js
 *   BENCH_WORKERS=1 BENCH_IDLE_N=4400 BENCH_SNAP=1 node bench/dist/idle.js
 *
 * BENCH_WORKERS (default 2) is ZTUNNEL_WORKER_THREADS; BENCH_IDLE_N the connections (default
 * as run.ts's for this open-file limit); BENCH_WARM=0 skips run.ts's warm-up; BENCH_SNAP=1
 * has every agent thread write a heap snapshot (after a full GC) at 0 and at N connections,
 * into bench/out/idle-snap (compare them with `node bench/dist/heap-diff.js A B`);
 * BENCH_AGENT_ENV="K=V K2=V2" adds to the agents' environment; BENCH_NODE_ARGS adds node flags.
 * BENCH_RATE=1 measures instead what a setting costs in CPU: new connections/s (3 rounds of
 * 2 s, concurrency 32) and 1 connection's throughput (3 x 256 MiB), with the agents' CPU.
 * Every thread of the agents loads `probe.js`, which answers with its heap figures.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startBenchServer } from "./bench-server.js";
import { connRate, idleMemory, latencySamples, preflight, throughput } from "./load.js";
import { startMesh, WORKLOADS_FILE } from "./mesh.js";
import { rssKiB, treeCpuSeconds } from "./procfs.js";
import { openFilesLimit, sleep } from "./util.js";

const WORKERS = process.env["BENCH_WORKERS"] ?? "2";
const nofile = openFilesLimit();
const N = Number(process.env["BENCH_IDLE_N"]) || Math.min(10_000, Math.floor((nofile * 125) / 256 / 100) * 100, Math.floor((nofile * 0.9 * 0.25 - 100) / 100) * 100);
const SNAP = process.env["BENCH_SNAP"] === "1";
/** BENCH_LIVE=1 (implied by BENCH_SNAP): also the heap after a full GC (one before opening too, which moves the baseline). */
const LIVE = SNAP || process.env["BENCH_LIVE"] === "1";
/** Its own loopback net (default 249), away from run.ts's 250: both may run at once on a shared machine. */
const NET = Number(process.env["BENCH_NET"]) || 249;
const out = fileURLToPath(new URL("../out/", import.meta.url));
const probeDir = `${out}idle-probe-${process.pid}`;
const snapDir = `${out}idle-snap`;

interface ThreadHeap {
  pid: number;
  threadId: number;
  isMainThread: boolean;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, { size: number; used: number }>;
}

let reqId = 0;
/** Every thread's heap figures (after a full GC with "gc"). */
async function probe(pids: readonly number[], what = ""): Promise<ThreadHeap[]> {
  const id = ++reqId;
  writeFileSync(`${probeDir}/req`, `${id} ${what}`);
  let last = -1;
  let stableSince = Date.now();
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
    await sleep(200);
    const files = readdirSync(probeDir).filter((f) => f.endsWith(`-${id}.json`));
    if (files.length !== last) [last, stableSince] = [files.length, Date.now()];
    // Each agent: its main thread and every worker (a short-lived parse worker may answer too).
    if (files.length >= pids.length * (1 + Number(WORKERS)) && Date.now() - stableSince > 1000) break;
  }
  const all = readdirSync(probeDir).filter((f) => f.endsWith(`-${id}.json`)).map((f) => JSON.parse(readFileSync(`${probeDir}/${f}`, "utf8")) as ThreadHeap);
  if (SNAP && what.includes("snap")) {
    for (const f of readdirSync(probeDir).filter((x) => x.endsWith(`-${id}.heapsnapshot`))) {
      const t = all.find((h) => f.startsWith(`${h.pid}-${h.threadId}-`));
      const agent = pids.indexOf(t?.pid ?? -1) === 0 ? "A" : "B";
      writeFileSync(`${snapDir}/${agent}-t${t?.threadId}-${what.includes("held") ? "held" : "base"}.heapsnapshot`, readFileSync(`${probeDir}/${f}`));
      rmSync(`${probeDir}/${f}`);
    }
  }
  return all;
}

interface Point {
  rssKiB: number[];
  heap: ThreadHeap[];
}

const sum = (hs: ThreadHeap[], pid: number, k: keyof ThreadHeap): number => hs.filter((h) => h.pid === pid).reduce((a, h) => a + Number(h[k]), 0);

async function main(): Promise<void> {
  mkdirSync(probeDir, { recursive: true });
  if (SNAP) {
    rmSync(snapDir, { recursive: true, force: true });
    mkdirSync(snapDir, { recursive: true });
  }
  const extra = Object.fromEntries((process.env["BENCH_AGENT_ENV"] ?? "").split(" ").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
  const probeJs = fileURLToPath(new URL("./probe.js", import.meta.url));
  const nodeOptions = [`--import=${probeJs}`, ...(process.env["BENCH_NODE_ARGS"] ?? "").split(" ").filter(Boolean)].join(" ");
  const workloads = `${probeDir}/workloads.yaml`;
  writeFileSync(workloads, readFileSync(WORKLOADS_FILE, "utf8").replaceAll("127.250.", `127.${NET}.`));
  const { proc: server, ports } = await startBenchServer([`127.${NET}.2.10:0`]);
  const mesh = await startMesh({ net: NET, workloadsFile: workloads, env: { HBONE_MAX_STREAMS_PER_IDENTITY: "20000", ZTUNNEL_WORKER_THREADS: WORKERS, NODE_OPTIONS: nodeOptions, ZT_PROBE_DIR: probeDir, ...extra } });
  try {
    const open = (): ReturnType<typeof mesh.open> => mesh.open(ports[0]!, `127.${NET}.1.10`, `127.${NET}.2.10`);
    await preflight(open);
    if (process.env["BENCH_WARM"] !== "0") {
      await throughput(open, 1, 64 << 20, 20_000);
      await latencySamples(open, { warm: 0, n: 500, size: 1024, capMs: 5000 });
    }
    const pids = mesh.pids;
    if (process.env["BENCH_RATE"] === "1") return await rates(open, pids);
    let before: Point | undefined;
    let held: Point | undefined;
    const live: { base: ThreadHeap[]; held: ThreadHeap[] } = { base: [], held: [] };
    let conns = 0;
    let afterGc: number[] = [];
    const r = await idleMemory(open, pids, () => server.send("closeAll"), { n: N, concurrency: 256, capMs: 90_000, settleMs: 2000 }, {
      async before() {
        before = { rssKiB: pids.map(rssKiB), heap: await probe(pids) };
        if (LIVE) live.base = await probe(pids, SNAP ? "gc snap base" : "gc");
      },
      async held(n) {
        conns = n;
        held = { rssKiB: pids.map(rssKiB), heap: await probe(pids) };
        if (LIVE) {
          live.held = await probe(pids, SNAP ? "gc snap held" : "gc");
          afterGc = pids.map(rssKiB);
        }
      },
    });
    const KiB = (bytes: number): number => bytes / 1024 / conns;
    const rows = pids.map((pid, i) => {
      const d = (k: keyof ThreadHeap): number => KiB(sum(held!.heap, pid, k) - sum(before!.heap, pid, k));
      const rss = (held!.rssKiB[i]! - before!.rssKiB[i]!) / conns;
      return {
        agent: i === 0 ? "A (source)" : "B (destination)",
        rssKiB: rss,
        heapUsedKiB: d("heapUsed"),
        heapTotalKiB: d("heapTotal"),
        liveHeapKiB: !LIVE ? NaN : KiB(sum(live.held, pid, "heapUsed") - sum(live.base, pid, "heapUsed")),
        externalKiB: d("external"),
        rssAfterGcKiB: LIVE && !SNAP ? (afterGc[i]! - before!.rssKiB[i]!) / conns : NaN,
        nativeKiB: rss - d("heapTotal"),
        // Committed size of each V8 space, before and held (MiB, all the agent's threads).
        spacesMiB: Object.fromEntries(
          Object.keys(held!.heap[0]?.spaces ?? {}).map((sp) => {
            const size = (hs: ThreadHeap[]): number => hs.filter((h) => h.pid === pid).reduce((a, h) => a + (h.spaces[sp]?.size ?? 0), 0) / 1048576;
            return [sp, `${size(before!.heap).toFixed(1)} -> ${size(held!.heap).toFixed(1)}`];
          }),
        ),
      };
    });
    const result = { workers: Number(WORKERS), conns, opened: r.opened, errors: r.errors, lastError: r.lastError, perConnKiB: r.perConnKiB, rssAfterCloseKiB: r.rssAfterCloseKiB - r.rssBeforeKiB, agentEnv: extra, nodeArgs: process.env["BENCH_NODE_ARGS"] ?? "", rows, threads: held!.heap.length };
    const f = (x: number): string => x.toFixed(1).padStart(7);
    process.stdout.write(`workers ${WORKERS}, ${conns} idle connections (errors ${r.errors}${r.lastError ? `: ${r.lastError}` : ""}): ${r.perConnKiB.toFixed(1)} KiB per connection, both agents\n`);
    process.stdout.write(`agent              RSS  heapUsed heapTotal  liveHeap  external  native(RSS-heapTotal)   [KiB per connection]\n`);
    for (const row of rows) process.stdout.write(`${row.agent.padEnd(16)}${f(row.rssKiB)}   ${f(row.heapUsedKiB)}   ${f(row.heapTotalKiB)}   ${f(row.liveHeapKiB)}   ${f(row.externalKiB)}   ${f(row.nativeKiB)}\n`);
    if (LIVE && !SNAP) for (const row of rows) process.stdout.write(`${row.agent} RSS after a full GC: ${row.rssAfterGcKiB.toFixed(1)} KiB per connection\n`);
    for (const row of rows) process.stdout.write(`${row.agent} V8 spaces, MiB: ${Object.entries(row.spacesMiB).filter(([, v]) => v !== "0.0 -> 0.0").map(([k, v]) => `${k} ${v}`).join(", ")}\n`);
    mkdirSync(out, { recursive: true });
    writeFileSync(`${out}idle-${WORKERS}.json`, JSON.stringify(result, null, 2));
  } finally {
    await mesh.stop().catch(() => {});
    server.kill("SIGTERM");
    rmSync(probeDir, { recursive: true, force: true });
  }
}

async function rates(open: Parameters<typeof connRate>[0], pids: readonly number[]): Promise<void> {
  for (let round = 0; round < 3; round++) {
    let cpu = treeCpuSeconds(pids);
    const r = await connRate(open, { concurrency: 32, durMs: 2000, maxCount: 200_000 });
    const rateCpu = treeCpuSeconds(pids) - cpu;
    cpu = treeCpuSeconds(pids);
    const t = await throughput(open, 1, 256 << 20, 30_000);
    const tCpu = treeCpuSeconds(pids) - cpu;
    process.stdout.write(`round ${round + 1}: ${r.perSec.toFixed(0)} conn/s (errors ${r.errors}, agents ${((rateCpu / r.ms) * 1e5).toFixed(0)}% cpu, ${((rateCpu / r.ok) * 1e6).toFixed(0)} us cpu/conn); 1 conn ${t.mibPerSec.toFixed(0)} MiB/s (agents ${((tCpu / t.ms) * 1e5).toFixed(0)}% cpu)\n`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`idle bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
