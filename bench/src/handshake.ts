/**
 * Connection setup on a fresh pool (issue 10, "cheaper connections"): how fast a node
 * gets from nothing to an HBONE connection for every (source identity, destination) pair,
 * with this tree's identity code ("after") and a former commit's ("before", RSA keys and
 * node-forge signatures), side by side in one run, rounds alternating. See bench/README.md.
 *
 * Measures, for each build:
 *  - issuance of one workload certificate (key + CSR + CA signature), one at a time: wall
 *    time, event-loop busy time (ELU) and CPU (all threads) per identity; and 50 at once;
 *  - first connections: N source identities x M destinations, every pair a new pool key,
 *    C at a time, both certificate managers empty: each source's and each destination's
 *    first connection fetches its certificate, every pair does a TLS handshake + CONNECT;
 *  - the same pairs again on a fresh pool with the certificates held: handshakes alone.
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { loadImpl, startEchoes, startTopology, tempCa, TRUST_DOMAIN, type CertSource, type Impl } from "./handshake-impl.js";
import { renderHandshake, type BuildFigures, type Run } from "./handshake-report.js";
import { machineCpuSeconds, selfCpuSeconds } from "./procfs.js";
import { machineInfo } from "./resilience-report.js";
import { sleep, writeResultsSection } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
const SOURCES = QUICK ? 10 : 50;
const DESTS = QUICK ? 2 : 4;
const ROUNDS = QUICK ? 1 : 3;
const CONCURRENCY = 16;
const ISSUE_ONE_BY_ONE = QUICK ? 5 : 20;
const ISSUE_AT_ONCE = 50;

/** Wall, CPU (this process, every thread) and event-loop busy time of `f`, and the rest of the machine's CPU meanwhile. */
async function measure(f: () => Promise<void>): Promise<Run> {
  const m0 = machineCpuSeconds().busy;
  const c0 = selfCpuSeconds();
  const e0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await f();
  const wallMs = performance.now() - t0;
  const loopMs = performance.eventLoopUtilization(e0).active;
  const cpuMs = (selfCpuSeconds() - c0) * 1000;
  const machineMs = (machineCpuSeconds().busy - m0) * 1000;
  return { wallMs, cpuMs, loopMs, restCpuPct: Math.max(0, ((machineMs - cpuMs) / wallMs) * 100) };
}

async function issueOne(impl: Impl, ca: CertSource, id: string): Promise<void> {
  const { csrPem } = await impl.identity.createKeyAndCsr(id);
  await ca.sign(csrPem, id, 3_600_000);
}

async function issuance(impl: Impl, ca: CertSource, round: number, fig: BuildFigures): Promise<void> {
  const id = (k: number): string => `spiffe://${TRUST_DOMAIN}/ns/bench/sa/issue-${round}-${k}`;
  const each: number[] = [];
  const run = await measure(async () => {
    for (let k = 0; k < ISSUE_ONE_BY_ONE; k++) {
      const t0 = performance.now();
      await issueOne(impl, ca, id(k));
      each.push(performance.now() - t0);
    }
  });
  fig.issueEachMs.push(...each);
  fig.issueLoopMs.push(run.loopMs / ISSUE_ONE_BY_ONE);
  fig.issueCpuMs.push(run.cpuMs / ISSUE_ONE_BY_ONE);
  fig.issueBatch.push(await measure(() => Promise.all(Array.from({ length: ISSUE_AT_ONCE }, (_, k) => issueOne(impl, ca, id(1000 + k)))).then(() => undefined)));
}

async function pairs(connect: (i: number, j: number) => Promise<void>): Promise<Run> {
  let next = 0;
  const total = SOURCES * DESTS;
  // Pair k: source k mod N to destination k div N, so the first N connections start every source's issuance.
  const worker = async (): Promise<void> => {
    for (let k = next++; k < total; k = next++) await connect(k % SOURCES, Math.floor(k / SOURCES));
  };
  return measure(() => Promise.all(Array.from({ length: CONCURRENCY }, worker)).then(() => undefined));
}

async function connectionRound(impl: Impl, ca: CertSource, fig: BuildFigures): Promise<void> {
  const topo = await startTopology(impl, ca, SOURCES, DESTS);
  try {
    fig.cold.push(await pairs(topo.connect));
    topo.resetPool();
    await sleep(300); // the closed sessions' sockets go before the next measure
    fig.warm.push(await pairs(topo.connect));
  } finally {
    await topo.close();
  }
  if (topo.faults.length) throw new Error(`${impl.label}: faults in the data path: ${topo.faults.slice(0, 3).join("; ")}`);
}

async function main(): Promise<void> {
  const started = Date.now();
  const beforeRoot = process.env["BENCH_BEFORE_ROOT"];
  const beforeRef = process.env["BENCH_BEFORE_REF"] ?? "?";
  if (!beforeRoot) throw new Error("BENCH_BEFORE_ROOT is not set: run bench/handshake.sh, which builds the 'before' commit");
  const info = machineInfo();
  const builds = [
    await loadImpl(beforeRoot, `before (${beforeRef})`),
    await loadImpl(fileURLToPath(new URL("../../", import.meta.url)), `after (${info.commit})`),
  ];
  const cas = await Promise.all(builds.map(tempCa));
  const echoes = await startEchoes(DESTS);
  const load0 = os.loadavg();
  const figures: BuildFigures[] = builds.map((b) => ({ label: b.label, issueEachMs: [], issueLoopMs: [], issueCpuMs: [], issueBatch: [], cold: [], warm: [] }));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const b of order) {
        process.stdout.write(`round ${round + 1}/${ROUNDS}: ${builds[b]!.label}\n`);
        await issuance(builds[b]!, cas[b]!.ca, round, figures[b]!);
        await connectionRound(builds[b]!, cas[b]!.ca, figures[b]!);
      }
    }
  } finally {
    echoes.close();
    for (const c of cas) c.remove();
  }
  const section = renderHandshake({
    figures,
    quick: QUICK,
    params: { sources: SOURCES, dests: DESTS, rounds: ROUNDS, concurrency: CONCURRENCY, oneByOne: ISSUE_ONE_BY_ONE, atOnce: ISSUE_AT_ONCE },
    machine: { cpus: os.cpus().length, model: info.cpu, node: process.version, load: [load0[0]!, os.loadavg()[0]!] },
    seconds: (Date.now() - started) / 1000,
  });
  writeResultsSection("handshake", section, QUICK);
  process.stdout.write(`\n${section}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`handshake bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
