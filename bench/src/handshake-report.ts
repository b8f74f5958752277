/** The handshake benchmark's section of bench/RESULTS.md. */
import { percentile } from "./util.js";

/** One measured stretch: wall, this process's CPU (all threads), event-loop busy time, the rest of the machine's CPU. */
export interface Run {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly loopMs: number;
  /** % of one CPU used by everything but this process meanwhile. */
  readonly restCpuPct: number;
}

export interface BuildFigures {
  readonly label: string;
  /** Wall ms of each one-at-a-time issuance. */
  readonly issueEachMs: number[];
  /** Per round: event-loop busy ms per identity, CPU ms per identity. */
  readonly issueLoopMs: number[];
  readonly issueCpuMs: number[];
  /** Per round: the issuance of `atOnce` identities together. */
  readonly issueBatch: Run[];
  /** Per round: the pairs with empty certificate managers, then again with the certificates held. */
  readonly cold: Run[];
  readonly warm: Run[];
}

export interface HandshakeReport {
  readonly figures: readonly BuildFigures[];
  readonly quick: boolean;
  readonly params: { sources: number; dests: number; rounds: number; concurrency: number; oneByOne: number; atOnce: number };
  readonly machine: { cpus: number; model: string; node: string; load: [number, number] };
  readonly seconds: number;
}

const median = (xs: readonly number[]): number => percentile(Float64Array.from(xs), xs.length, 50);
const fmt = (x: number, digits: number): string => x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const digitsFor = (x: number): number => (x >= 100 ? 0 : x >= 10 ? 1 : x >= 1 ? 2 : 3);
const num = (x: number): string => fmt(x, digitsFor(x));

/** What the figures say, the same for every run. */
const NOTES = [
  "Most of \"before\"'s first-connection time was issuance: an RSA 2048 key (hundreds of ms of CPU, in the threadpool) and two",
  "node-forge signatures (on the event loop) per identity. With certificates held, the key type matters little: a new HBONE",
  "connection's main-thread work (TLS on both sides, two HTTP/2 sessions, the CONNECT, the upstream dial) outweighs the",
  "handshake's two private-key signatures, which are what RSA 2048 made dear and ECDSA P-256 makes cheap.",
];

export function renderHandshake(r: HandshakeReport): string {
  const [before, after] = r.figures as [BuildFigures, BuildFigures];
  const p = r.params;
  const pairsN = p.sources * p.dests;
  const rate = (runs: readonly Run[]): number => median(runs.map((x) => (pairsN / x.wallMs) * 1000));
  const perPair = (runs: readonly Run[]): number => median(runs.map((x) => x.cpuMs / pairsN));
  /** A row: the two builds' figures and how many times better "after" is (lower is better unless `higher`). */
  const row = (what: string, b: number, a: number, higher = false, goal = ""): string => {
    const gain = higher ? a / b : b / a;
    return `| ${what} | ${num(b)} | ${num(a)} | ${fmt(gain, 1)}× | ${goal} |`;
  };
  const coldGain = rate(after.cold) / rate(before.cold);
  const rest = r.figures.flatMap((f) => [...f.cold, ...f.warm].map((x) => x.restCpuPct));
  const noisy = Math.max(...rest) > 20 || r.machine.load[0] > r.machine.cpus / 2;
  const rounds: string[] = [];
  for (let i = 0; i < p.rounds; i++) {
    for (const f of r.figures) {
      const c = f.cold[i]!;
      const w = f.warm[i]!;
      rounds.push(`| ${i + 1} | ${f.label} | ${num((pairsN / c.wallMs) * 1000)} | ${num((pairsN / w.wallMs) * 1000)} | ${num(f.issueBatch[i]!.wallMs)} | ${fmt(c.restCpuPct, 0)} / ${fmt(w.restCpuPct, 0)} |`);
    }
  }
  return [
    "<!-- handshake:begin -->",
    "## Connection setup on a fresh pool: certificates and handshakes",
    "",
    "```",
    "bash bench/handshake.sh",
    "```",
    "",
    `- Date: ${new Date().toISOString()}; ${r.machine.cpus} CPUs (${r.machine.model}); Node ${r.machine.node}; ${fmt(r.seconds, 0)} s; ` +
      `load average (1 min) ${fmt(r.machine.load[0], 2)} at the start, ${fmt(r.machine.load[1], 2)} at the end${r.quick ? " (BENCH_QUICK: fewer pairs, one round)" : ""}`,
    `- **${before.label}**: the identity code before issue 10 (RSA 2048 workload keys; CSR and certificates signed by node-forge in`,
    `  JavaScript), unpacked with \`git archive\` and built by the script. **${after.label}**: this tree (ECDSA P-256 workload keys,`,
    "  node:crypto signatures in libuv's threadpool). The same benchmark code drives both builds' public APIs, rounds alternating.",
    "- One process: the client side's HBONE pool and the server side's 15008 listeners (one per destination IP, 127.213.2.x), each",
    "  side with its own certificate manager (as two agents), one CA per build (an RSA 2048 root, as the built-in CA generates).",
    "  No agent process runs, so no data-path workers: the pool and the listeners share the bench's one thread.",
    `- Issuance: \`createKeyAndCsr\` + the CA's \`sign\`, ${p.oneByOne} identities one at a time per round (wall: median of all), then`,
    `  ${p.atOnce} at once (an agent starting with ${p.atOnce} identities on its node). Event-loop busy: ELU active time; CPU: this`,
    "  process, every thread (key generation and, after, signing run in the threadpool).",
    `- First connections: ${p.sources} source identities × ${p.dests} destinations = ${pairsN} pairs, ${p.concurrency} at a time, both`,
    "  certificate managers empty: every pair is a new pool key (TLS 1.3 mTLS handshake + HTTP/2 CONNECT, answered 200), and the",
    "  first connection of each source and of each destination fetches its certificate. Certificates held: the same pairs again on",
    "  a fresh pool, the certificates kept (handshakes alone).",
    `- Every figure is the median of ${p.rounds} round${p.rounds === 1 ? "" : "s"} (each listed below). The load generator, both sides and the CA share this process's`,
    `  event loop and the machine's ${r.machine.cpus} CPUs, so the ratios mean more than the absolute figures.`,
    noisy
      ? `- **These numbers may be noisy**: something else was running (the rest of the machine used up to ${fmt(Math.max(...rest), 0)} % of a CPU during the connection measures, load average ${fmt(r.machine.load[0], 2)} at the start).`
      : `- The rest of the machine used at most ${fmt(Math.max(...rest), 0)} % of a CPU during the connection measures.`,
    "",
    `| Measure | ${before.label} | ${after.label} | gain | goal |`,
    "|---|---:|---:|---:|---|",
    row("issuance, one at a time: ms per identity (wall)", median(before.issueEachMs), median(after.issueEachMs)),
    row("issuance: event-loop busy ms per identity", median(before.issueLoopMs), median(after.issueLoopMs)),
    row("issuance: CPU ms per identity", median(before.issueCpuMs), median(after.issueCpuMs)),
    row(`${p.atOnce} identities at once: ms until all are signed`, median(before.issueBatch.map((x) => x.wallMs)), median(after.issueBatch.map((x) => x.wallMs))),
    row(`first connections (fetch + handshake + CONNECT): pairs/s`, rate(before.cold), rate(after.cold), true, `≥ 3×: ${coldGain >= 3 ? "met" : "**not met**"}`),
    row("first connections: CPU ms per pair", perPair(before.cold), perPair(after.cold)),
    row("certificates held (handshake + CONNECT): handshakes/s", rate(before.warm), rate(after.warm), true),
    row("certificates held: CPU ms per handshake", perPair(before.warm), perPair(after.warm)),
    "",
    "Rounds (pairs/s; the rest of the machine's CPU in % of one CPU during the first connections / certificates held):",
    "",
    `| round | build | first connections | certificates held | ${p.atOnce} at once (ms) | rest of machine (%) |`,
    "|---|---|---:|---:|---:|---:|",
    ...rounds,
    "",
    ...NOTES,
    "<!-- handshake:end -->",
  ].join("\n");
}
