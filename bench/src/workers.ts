/**
 * Data-path workers (`bash bench/workers.sh`): the mesh pair with ZTUNNEL_WORKER_THREADS of
 * 1, 2 and 4 (both agents), and a stunnel pair, each carrying 16 connections at once
 * through loopback; per setting the median of 3 rounds (settings alternating), and the
 * agents' CPU per GiB carried. Writes its section of bench/RESULTS.md. Asserts nothing.
 */
import net from "node:net";
import os from "node:os";
import { startBenchServer } from "./bench-server.js";
import { medianRound, preflight, tcpOpen, throughput, type ThroughputResult } from "./load.js";
import { SERVER_IP, startMesh, type Mesh } from "./mesh.js";
import { treeCpuSeconds } from "./procfs.js";
import { startStunnelPair, type StunnelPair } from "./stunnel.js";
import { writeResultsSection } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
const MiB = 1 << 20;
const CONNS = 16;
const PER_CONN = QUICK ? 16 * MiB : 128 * MiB;
const ROUNDS = 3;
const SETTINGS = [1, 2, 4] as const;

interface Run {
  readonly name: string;
  /** Brings the path up (a mesh starts per round: the agents' addresses are the bench's one mesh's). */
  up(): Promise<{ open: () => Promise<net.Socket>; pids: readonly number[]; down(): Promise<void> }>;
}

async function main(): Promise<void> {
  const started = Date.now();
  const { proc: server, ports } = await startBenchServer(["127.0.0.1:0", `${SERVER_IP}:0`]);
  const [directPort, meshPort] = [ports[0]!, ports[1]!];
  let stunnel: StunnelPair | undefined;
  try {
    const connect = (port: number): (() => Promise<net.Socket>) => tcpOpen("127.0.0.1", port);
    stunnel = await startStunnelPair(directPort, (port) => preflight(connect(port), 1024));
    const pair = stunnel;
    const runs: Run[] = [
      {
        name: "stunnel pair",
        up: async () => ({
          pids: pair.pids,
          down: async () => {},
          open: connect(pair.port),
        }),
      },
      ...SETTINGS.map(
        (n): Run => ({
          name: `mesh, ${n} worker${n > 1 ? "s" : ""}`,
          up: async () => {
            const m: Mesh = await startMesh({ env: { ZTUNNEL_WORKER_THREADS: String(n) } });
            return { pids: m.pids, open: () => m.open(meshPort), down: () => m.stop() };
          },
        }),
      ),
    ];
    const results = new Map<string, { r: ThroughputResult; cpuPerGiB: number }[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const run of round % 2 ? [...runs].reverse() : runs) {
        const p = await run.up();
        try {
          await throughput(p.open, 4, 32 * MiB, 20_000); // warm-up: JIT, TLS, pools
          const cpu0 = treeCpuSeconds(p.pids);
          const r = await throughput(p.open, CONNS, PER_CONN, 40_000);
          const cpu = treeCpuSeconds(p.pids) - cpu0;
          const list = results.get(run.name) ?? [];
          list.push({ r, cpuPerGiB: cpu / (r.bytes / (1 << 30)) });
          results.set(run.name, list);
          process.stdout.write(`${run.name}: ${r.mibPerSec.toFixed(0)} MiB/s, ${(cpu / (r.ms / 1000)).toFixed(2)} cores${r.errors.length ? `, errors: ${r.errors.slice(0, 3).join("; ")}` : ""}\n`);
        } finally {
          await p.down();
        }
      }
    }
    const median = (name: string): { r: ThroughputResult; cpuPerGiB: number } => medianRound(results.get(name)!, (x) => x.r.mibPerSec);
    const base = median("stunnel pair").r.mibPerSec;
    const rows = runs.map((run) => {
      const m = median(run.name);
      const cores = m.cpuPerGiB * (m.r.mibPerSec / 1024);
      return `| ${run.name} | ${m.r.mibPerSec.toFixed(0)} | ${(m.r.mibPerSec / base).toFixed(2)}x | ${cores.toFixed(2)} | ${m.cpuPerGiB.toFixed(2)} |`;
    });
    const section = [
      "<!-- workers:begin -->",
      "## Data-path workers: 16 connections with 1, 2 and 4 workers",
      "",
      "```",
      "bash bench/workers.sh",
      "```",
      "",
      `- Date: ${new Date().toISOString()}; ${os.availableParallelism()} CPUs; Node ${process.version}; ${((Date.now() - started) / 1000).toFixed(0)} s${QUICK ? " (BENCH_QUICK)" : ""}`,
      `- ${CONNS} connections at once, ${PER_CONN / MiB} MiB each, through the pair (client -> SOCKS5 of agent A -> HBONE -> agent B -> server, all on loopback; stunnel: client -> stunnel -> TLS -> stunnel -> server);`,
      `  ${ROUNDS} rounds, the settings alternating, the median round. CPU: both proxies' processes (every thread), per second of the run and per GiB carried.`,
      "",
      "| path | MiB/s | vs stunnel | proxy CPU (cores) | proxy CPU s per GiB |",
      "|---|---:|---:|---:|---:|",
      ...rows,
      "",
      `On this machine (${os.availableParallelism()} CPUs) the two proxies, the load generator and the server share the cores: every`,
      "path is bound by CPU, so more workers cannot add throughput here; what decides is the CPU per GiB. Workers pay",
      "where a node has cores the agent does not use: they spread connections over threads that each carry their own.",
      "<!-- workers:end -->",
    ].join("\n");
    writeResultsSection("workers", section, QUICK);
    process.stdout.write(`\n${section}\n`);
  } finally {
    await stunnel?.stop();
    server.kill();
  }
}

await main();
