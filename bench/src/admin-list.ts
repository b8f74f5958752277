/**
 * Admin listing benchmark (`bash bench/admin-list.sh`), from issue 12: what the admin's live
 * views cost with many connections open. The resilience bench's layout (four agents on
 * loopback net 74, clients on nodes a, c and d through their SOCKS5, the bench server on
 * node-b's workload): 10,000 connections held, all arriving at agent B. Then, on agent B:
 *
 *   list       GET /debug/connections (every connection, streamed page by page from the
 *              workers): time to the last byte, bytes, and B's RSS before and after.
 *   page poll  what the admin page asks each second (/debug/status and the first 1,000
 *              connections): time of one round.
 *   CPU        B's CPU over 20 s holding the connections idle, without and then with the
 *              page's poll every second: what an open admin page costs.
 *
 * A benchmark, not a test: it asserts nothing. It writes its section of bench/RESULTS.md
 * (between the admin-list markers).
 */
import { startBenchServer } from "./bench-server.js";
import { preflight } from "./load.js";
import { startMesh, type Mesh } from "./mesh.js";
import { cpuSeconds, rssKiB } from "./procfs.js";
import { HELD_CLIENT_IPS, HELD_NODES, log, metric, NET, openHeld, SERVER_IP, WORKLOADS } from "./resilience-support.js";
import { errMsg, openFilesLimit, percentile, sleep, writeResultsSection } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
const P = { target: QUICK ? 1000 : 10_000, lists: QUICK ? 3 : 10, polls: QUICK ? 5 : 20, cpuSec: QUICK ? 5 : 20, concurrency: 256, capMs: 120_000 };
/** SOCKS5 gets a quarter of an agent's data-path descriptors (packages/ztunnel/src/fd-limit.ts). */
const SOCKS5_SHARE = 0.25;
const B = 1;

interface Timed {
  readonly ms: number[];
  readonly bytes: number;
}

async function timed(mesh: Mesh, path: string, n: number): Promise<Timed> {
  const ms: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const body = await mesh.admin(B, path);
    ms.push(performance.now() - t0);
    bytes = Buffer.byteLength(body);
  }
  return { ms, bytes };
}

/** Agent B's CPU (percent of one core) over `sec` seconds, `during` running meanwhile. */
async function cpuOver(pid: number, sec: number, during: (until: number) => Promise<void>): Promise<number> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  const until = t0 + sec * 1000;
  await during(until);
  await sleep(Math.max(0, until - performance.now()));
  return ((cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000)) * 100;
}

const stats = (xs: number[]): string => {
  const v = Float64Array.from(xs);
  return `p50 ${percentile(v, v.length, 50).toFixed(0)} ms, max ${percentile(v, v.length, 100).toFixed(0)} ms`;
};

async function main(): Promise<void> {
  const { proc, ports } = await startBenchServer([`${SERVER_IP}:0`]);
  const port = ports[0]!;
  const lines: string[] = [];
  try {
    const mesh = await startMesh({ net: NET, workloadsFile: WORKLOADS, nodes: HELD_NODES });
    try {
      for (const ip of HELD_CLIENT_IPS) await preflight(() => mesh.open(port, ip, SERVER_IP), 1024);
      const capacity = metric(await mesh.metrics(0), "ztunnel_data_path_descriptors", 'state="capacity"');
      const n = Math.min(P.target, 3 * Math.floor((capacity * SOCKS5_SHARE - 100) / 100) * 100);
      log(`opening ${n} connections (open-file limit ${openFilesLimit()})`);
      const set = await openHeld(mesh, { port, from: HELD_CLIENT_IPS, to: SERVER_IP, n, concurrency: P.concurrency, capMs: P.capMs });
      const held = set.socks.length;
      log(`${held} held (${set.errors} failed)`);
      await sleep(3000);
      const pid = mesh.pids[B]!;
      const idleCpu = await cpuOver(pid, P.cpuSec, async () => {});
      const rss0 = rssKiB(pid);
      const all = "/debug/connections?limit=100000";
      const list = await timed(mesh, all, P.lists);
      const listed = (JSON.parse(await mesh.admin(B, all)) as { count: number }).count;
      const rss1 = rssKiB(pid);
      // As many again: garbage the heaps grew for comes back to be reused, a leak would add up.
      await timed(mesh, all, P.lists);
      const rss2 = rssKiB(pid);
      const status = await timed(mesh, "/debug/status", P.polls);
      const page = await timed(mesh, "/debug/connections?limit=1000", P.polls);
      const pollCpu = await cpuOver(pid, P.cpuSec, async (until) => {
        while (performance.now() < until) {
          const t = performance.now();
          await Promise.all([mesh.admin(B, "/debug/status"), mesh.admin(B, "/debug/connections?limit=1000")]);
          await sleep(Math.max(0, 1000 - (performance.now() - t)));
        }
      });
      log(`list ${stats(list.ms)}, ${(list.bytes / 1024).toFixed(0)} KiB; CPU idle ${idleCpu.toFixed(2)}%, polled ${pollCpu.toFixed(2)}%`);
      lines.push(
        `Agent B holding ${held} inbound connections (${listed} listed), 2 data-path workers:`,
        "",
        "| what | figure |",
        "|---|---|",
        `| GET /debug/connections (all ${listed}), ${P.lists} times | ${stats(list.ms)}; ${(list.bytes / 1024).toFixed(0)} KiB (${(list.bytes / Math.max(1, listed)).toFixed(0)} B per connection) |`,
        `| agent B's RSS before those listings, after them, and after as many again | ${(rss0 / 1024).toFixed(0)} → ${(rss1 / 1024).toFixed(0)} → ${(rss2 / 1024).toFixed(0)} MiB |`,
        `| the page's poll: GET /debug/status | ${stats(status.ms)}; ${(status.bytes / 1024).toFixed(1)} KiB |`,
        `| the page's poll: GET /debug/connections?limit=1000 | ${stats(page.ms)}; ${(page.bytes / 1024).toFixed(0)} KiB |`,
        `| agent B's CPU over ${P.cpuSec} s, connections idle, no page | ${idleCpu.toFixed(2)}% of a core |`,
        `| the same with the page's poll every second | ${pollCpu.toFixed(2)}% of a core |`,
      );
      set.destroyAll();
    } finally {
      await mesh.stop();
    }
  } catch (e) {
    lines.push(`FAILED: ${errMsg(e)}`);
    log(`FAILED: ${errMsg(e)}`);
  } finally {
    proc.kill("SIGTERM");
  }
  const section = [
    "<!-- admin-list:begin -->",
    "## Admin listing under held connections (issue 12)",
    "",
    "`bash bench/admin-list.sh` (bench/src/admin-list.ts): the resilience bench's four agents, connections held from nodes a, c and d to node-b's workload; on agent B the full listing, the admin page's once-a-second poll, and B's CPU without and with that poll.",
    "",
    ...lines,
    "",
    `Run ${new Date().toISOString()}; the open-file limit was ${openFilesLimit()}.`,
    "<!-- admin-list:end -->",
  ].join("\n");
  process.stdout.write(`\n${section}\n`);
  writeResultsSection("admin-list", section, QUICK);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`admin-list bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
