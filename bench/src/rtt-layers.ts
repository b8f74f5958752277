/**
 * Where a round trip's time goes (`bash bench/rtt-layers.sh`): the 1 KiB echo RTT through pairs
 * of plain Node relays, each relay its own process as an agent is, that add one layer at a time
 * (TCP, TLS 1.3, HTTP/2 without TLS, HTTP/2 over TLS: what HBONE is on the wire), beside direct
 * TCP, a stunnel pair and the mesh (1 and 2 workers), all on loopback, rounds alternating.
 * Prints a table; writes nothing. Asserts nothing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startBenchServer } from "./bench-server.js";
import { latencySamples, preflight, summarizeLatency, tcpOpen, type LatencySamples, type Open } from "./load.js";
import { SERVER_IP, startMesh } from "./mesh.js";
import { makeCerts, startStunnelPair } from "./stunnel.js";
import { freePort } from "./util.js";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? "4");
const N = Number(process.env["BENCH_N"] ?? "4000");
const RELAY = fileURLToPath(new URL("./relay-layer.js", import.meta.url));

interface Path { readonly name: string; up(): Promise<{ open: Open; down(): Promise<void> }> }

async function relayPair(mode: string, echoPort: number, dir: string): Promise<{ open: Open; down(): Promise<void> }> {
  const [pa, pb] = [await freePort("127.0.0.1"), await freePort("127.0.0.1")];
  const procs: ChildProcess[] = [];
  for (const [side, listen, connect] of [["b", pb, echoPort], ["a", pa, pb]] as const) {
    const p = spawn(process.execPath, [RELAY, mode, side, String(listen), String(connect), dir], { stdio: ["ignore", "pipe", "inherit"] });
    procs.push(p);
    await new Promise<void>((resolve, reject) => {
      p.stdout!.once("data", () => resolve());
      p.once("exit", (code) => reject(new Error(`relay ${mode}/${side} exited ${code}`)));
    });
  }
  return { open: tcpOpen("127.0.0.1", pa), down: async () => void procs.forEach((p) => p.kill()) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-bench-rtt-"));
  makeCerts(dir);
  const { proc: server, ports } = await startBenchServer(["127.0.0.1:0", `${SERVER_IP}:0`]);
  const [echo, meshPort] = [ports[0]!, ports[1]!];
  const paths: Path[] = [
    { name: "direct TCP", up: async () => ({ open: tcpOpen("127.0.0.1", echo), down: async () => {} }) },
    ...["tcp", "tls", "h2c", "h2"].map((mode): Path => ({ name: `Node relays: ${mode}`, up: () => relayPair(mode, echo, dir) })),
    {
      name: "stunnel pair",
      up: async () => {
        const s = await startStunnelPair(echo, (port) => preflight(tcpOpen("127.0.0.1", port), 1024));
        return { open: tcpOpen("127.0.0.1", s.port), down: () => s.stop() };
      },
    },
    ...[1, 2].map((n): Path => ({
      name: `mesh, ${n} worker${n > 1 ? "s" : ""}`,
      up: async () => {
        const m = await startMesh({ env: { ZTUNNEL_WORKER_THREADS: String(n) } });
        return { open: () => m.open(meshPort), down: () => m.stop() };
      },
    })),
  ];
  const got = new Map<string, LatencySamples[]>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const p of round % 2 ? [...paths].reverse() : paths) {
        const up = await p.up();
        try {
          const r = await latencySamples(up.open, { warm: 300, n: N, size: 1024, capMs: 30_000 });
          (got.get(p.name) ?? got.set(p.name, []).get(p.name)!).push(r);
          const one = summarizeLatency([r]);
          process.stdout.write(`${p.name}: p50 ${one.p50us.toFixed(0)} us, p99 ${one.p99us.toFixed(0)} us\n`);
        } finally {
          await up.down();
        }
      }
    }
  } finally {
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  const base = summarizeLatency(got.get("direct TCP")!);
  process.stdout.write(`\n| path | RTT p50 (us) | p99 (us) | p50 added | p99 added |\n|---|---:|---:|---:|---:|\n`);
  for (const p of paths) {
    const r = summarizeLatency(got.get(p.name)!);
    process.stdout.write(`| ${p.name} | ${r.p50us.toFixed(0)} | ${r.p99us.toFixed(0)} | ${(r.p50us - base.p50us).toFixed(0)} | ${(r.p99us - base.p99us).toFixed(0)} |\n`);
  }
}

await main();
