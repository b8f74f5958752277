/**
 * Data-path levers (`bash bench/levers.sh`): one connection pushing 512 MiB through the mesh
 * pair (1 worker per agent), once per setting in BENCH_LEVERS (a `;`-separated list of
 * `name=ENV=VALUE,ENV=VALUE` entries of the agents' environment, `base` with none), the
 * settings alternating over 3 rounds; per setting the median round's MiB/s and each agent's
 * CPU seconds per GiB. BENCH_MEASURE=rtt: the 1 KiB round trip instead. Prints a table;
 * writes nothing. Asserts nothing. The lever switches the issue-10 trials used
 * (ZT_LEVER_*) live in commit 1ce5fc7 only (bench/RESULTS.md, "Levers").
 */
import { startBenchServer } from "./bench-server.js";
import { latencySamples, medianRound, summarizeLatency, throughput, type LatencySamples } from "./load.js";
import { SERVER_IP, startMesh } from "./mesh.js";
import { treeCpuSeconds } from "./procfs.js";

const MiB = 1 << 20;
const PER_CONN = Number(process.env["BENCH_MIB"] ?? "512") * MiB;
const CONNS = Number(process.env["BENCH_CONNS"] ?? "1");
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? "3");

interface Setting { readonly name: string; readonly env: Record<string, string> }

function settings(): Setting[] {
  const spec = process.env["BENCH_LEVERS"] ?? "base";
  return spec.split(";").map((entry) => {
    const [name, vars = ""] = entry.split(/=(.*)/s) as [string, string?];
    const env: Record<string, string> = {};
    for (const kv of vars.split(",").filter(Boolean)) {
      const [k, v = ""] = kv.split(/=(.*)/s) as [string, string?];
      env[k] = v;
    }
    return { name, env };
  });
}

interface Row { mibPerSec: number; a: number; b: number }
const RTT = process.env["BENCH_MEASURE"] === "rtt";

async function main(): Promise<void> {
  const { proc: server, ports } = await startBenchServer([`${SERVER_IP}:0`]);
  const port = ports[0]!;
  const list = settings();
  const rows = new Map<string, Row[]>();
  const rtts = new Map<string, LatencySamples[]>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of round % 2 ? [...list].reverse() : list) {
        const m = await startMesh({ env: { ZTUNNEL_WORKER_THREADS: "1", ...s.env } });
        try {
          const open = (): ReturnType<typeof m.open> => m.open(port);
          if (RTT) {
            const r = await latencySamples(open, { warm: 500, n: 5000, size: 1024, capMs: 30_000 });
            (rtts.get(s.name) ?? rtts.set(s.name, []).get(s.name)!).push(r);
            const one = summarizeLatency([r]);
            process.stdout.write(`${s.name}: RTT p50 ${one.p50us.toFixed(0)} us p99 ${one.p99us.toFixed(0)} us\n`);
            continue;
          }
          // With --trace-gc in NODE_OPTIONS: the agents' collections during the measure.
          const gcs = [new Map<string, number>(), new Map<string, number>()];
          let counting = false;
          m.procs.slice(0, 2).forEach((p, i) =>
            p.stdout?.on("data", (c: Buffer) => {
              if (!counting) return;
              for (const g of c.toString().matchAll(/ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact)/g)) {
                const k = `${g[1]}`;
                gcs[i]!.set(k, (gcs[i]!.get(k) ?? 0) + 1);
              }
            }),
          );
          await throughput(open, CONNS, 64 * MiB, 20_000);
          const [a0, b0] = [treeCpuSeconds([m.pids[0]!]), treeCpuSeconds([m.pids[1]!])];
          counting = true;
          const r = await throughput(open, CONNS, PER_CONN, 60_000);
          counting = false;
          if (gcs[0]!.size || gcs[1]!.size) process.stdout.write(`GCs A ${JSON.stringify([...gcs[0]!])} B ${JSON.stringify([...gcs[1]!])}\n`);
          const gib = r.bytes / (1 << 30);
          const row = { mibPerSec: r.mibPerSec, a: (treeCpuSeconds([m.pids[0]!]) - a0) / gib, b: (treeCpuSeconds([m.pids[1]!]) - b0) / gib };
          (rows.get(s.name) ?? rows.set(s.name, []).get(s.name)!).push(row);
          process.stdout.write(`${s.name}: ${row.mibPerSec.toFixed(0)} MiB/s, CPU-s/GiB A ${row.a.toFixed(2)} B ${row.b.toFixed(2)}${r.errors.length ? ` errors: ${r.errors.slice(0, 2).join("; ")}` : ""}\n`);
        } finally {
          await m.stop();
        }
      }
    }
  } finally {
    server.kill();
  }
  if (RTT) {
    process.stdout.write(`\n| setting | RTT p50 (us) | p99 (us) |\n|---|---:|---:|\n`);
    for (const s of list) {
      const r = summarizeLatency(rtts.get(s.name)!);
      process.stdout.write(`| ${s.name} | ${r.p50us.toFixed(0)} | ${r.p99us.toFixed(0)} |\n`);
    }
    return;
  }
  process.stdout.write(`\n| setting | MiB/s | CPU-s/GiB agent A | agent B | both |\n|---|---:|---:|---:|---:|\n`);
  for (const s of list) {
    const m = medianRound(rows.get(s.name)!, (x) => x.mibPerSec);
    process.stdout.write(`| ${s.name} | ${m.mibPerSec.toFixed(0)} | ${m.a.toFixed(2)} | ${m.b.toFixed(2)} | ${(m.a + m.b).toFixed(2)} |\n`);
  }
}

await main();
