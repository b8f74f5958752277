/**
 * Where a GiB's CPU goes in each agent (`sudo bash bench/profile.sh`): one connection pushes
 * 2 GiB through the mesh pair (1 data-path worker per agent, loopback) while `perf record`
 * samples both agent processes (every thread, user and kernel, 1999 Hz) for a few seconds in the
 * middle of the transfer; the samples are sorted into categories by symbol. Prints a table;
 * writes nothing. Asserts nothing. Needs `perf` and the right to profile (root).
 */
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startBenchServer } from "./bench-server.js";
import { connRate, throughput } from "./load.js";
import { SERVER_IP, startMesh } from "./mesh.js";
import { treeCpuSeconds } from "./procfs.js";
import { sleep } from "./util.js";

const MiB = 1 << 20;
const SECONDS = Number(process.env["BENCH_SECONDS"] ?? "6");
// BENCH_MEASURE=conns: new connections (32 loops of connect, 16 B echo, close) instead; per 1,000 connections.
const CONNS = process.env["BENCH_MEASURE"] === "conns";
// BENCH_TOP=n: also the n hottest symbols of each agent.
const TOP = Number(process.env["BENCH_TOP"] ?? "0");

const CATEGORIES: [string, RegExp][] = [
  ["TLS (OpenSSL: AES-GCM, records)", /aesni|ghash|gcm|ssl3_|ssl_|tls1|tls13|EVP_|evp_|ossl_|OPENSSL|SSL_|BIO_|CRYPTO_|ctr128/],
  ["nghttp2 and Node's http2 (C++)", /nghttp2|http2::/],
  ["kernel: copies to and from sockets", /^\[k\].*(copy_(from|to)_iter|copy_user|rep_movs|clear_page)/],
  ["kernel: scheduling", /^\[k\].*(finish_task_switch|schedule|futex|pick_next)/],
  ["kernel: TCP/IP, syscalls, epoll", /^\[k\]/],
  ["memcpy (user space)", /memmove|memcpy|memset/],
  ["malloc/free", /malloc|free|_int_|unlink_chunk|realloc|calloc|tcache|operator new|operator delete/],
  ["V8 garbage collection", /Marking|Scaveng|Sweep|Evacuat|Heap|GC|Compact|RememberedSet|PointersUpdating|WeakReferences|Young|Concurrent/],
  ["JavaScript (streams, agent)", /JS:|Builtins_|\] 0x[0-9a-f]+$/],
  ["libuv", /uv_|uv__|epoll/],
  ["Node/V8 bindings (C++)", /node::|v8::|Stream/],
];
const category = (sym: string): string => CATEGORIES.find(([, re]) => re.test(sym))?.[0] ?? "other";

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-bench-perf-"));
  const data = path.join(dir, "perf.data");
  const { proc: server, ports } = await startBenchServer([`${SERVER_IP}:0`]);
  const m = await startMesh({ env: { ZTUNNEL_WORKER_THREADS: process.env["ZTUNNEL_WORKER_THREADS"] ?? "1", NODE_OPTIONS: "--perf-basic-prof" } });
  try {
    const open = (): ReturnType<typeof m.open> => m.open(ports[0]!);
    await throughput(open, 1, 64 * MiB, 20_000);
    const cpu0 = m.pids.map((p) => treeCpuSeconds([p]));
    const run = CONNS
      ? connRate(open, { concurrency: 32, durMs: (SECONDS + 4) * 1000, maxCount: 1e6 }).then((c) => ({ units: c.ok / 1000, what: `${c.perSec.toFixed(0)} connections/s, ${c.errors} errors` }))
      : throughput(open, 1, 2048 * MiB, 120_000).then((t) => ({ units: t.bytes / (1 << 30), what: `${t.mibPerSec.toFixed(0)} MiB/s${t.errors.length ? `, errors: ${t.errors.join("; ")}` : ""}` }));
    await sleep(2000);
    const perf = spawn("perf", ["record", "-F", "1999", "-p", m.pids.join(","), "-o", data, "--", "sleep", String(SECONDS)], { stdio: "ignore" });
    await new Promise((r) => perf.once("exit", r));
    const r = await run;
    const perGiB = m.pids.map((p, i) => (treeCpuSeconds([p]) - cpu0[i]!) / r.units);
    process.stdout.write(`${r.what}\n`);
    const report = execFileSync("perf", ["report", "-i", data, "--sort", "pid,sym", "--stdio"], { encoding: "utf8", maxBuffer: 256 * MiB });
    const threadsOf = m.pids.map((pid) => new Set(execFileSync("ls", [`/proc/${pid}/task`], { encoding: "utf8" }).split("\n").filter(Boolean)));
    const per = m.pids.map(() => new Map<string, number>());
    const syms = m.pids.map(() => new Map<string, number>());
    for (const line of report.split("\n")) {
      const x = /^\s*([\d.]+)%\s+(\d+):\S+\s+(.*)$/.exec(line);
      if (!x) continue;
      const agent = threadsOf.findIndex((t) => t.has(x[2]!));
      if (agent < 0) continue;
      const k = category(x[3]!.trim());
      per[agent]!.set(k, (per[agent]!.get(k) ?? 0) + Number(x[1]));
      syms[agent]!.set(x[3]!.trim(), (syms[agent]!.get(x[3]!.trim()) ?? 0) + Number(x[1]));
    }
    const names = [...CATEGORIES.map(([n]) => n), "other"];
    const totals = per.map((p) => [...p.values()].reduce((a, b) => a + b, 0));
    process.stdout.write(`\n| where the CPU goes (CPU-ms per ${CONNS ? "1,000 connections" : "GiB"}, share) | agent A (source: SOCKS5 in, HBONE out) | agent B (destination: HBONE in, TCP out) |\n|---|---:|---:|\n`);
    for (const n of names) {
      const shares = per.slice(0, 2).map((p, i) => (p.get(n) ?? 0) / totals[i]!);
      if (shares.every((x) => x < 0.0005)) continue;
      process.stdout.write(`| ${n} | ${shares.map((x, i) => `${(x * perGiB[i]! * 1000).toFixed(0)} (${(x * 100).toFixed(1)}%)`).join(" | ")} |\n`);
    }
    process.stdout.write(`| all (every thread of the agent) | ${perGiB.slice(0, 2).map((x) => `${(x * 1000).toFixed(0)}`).join(" | ")} |\n`);
    syms.slice(0, 2).forEach((map, i) => {
      if (!TOP) return;
      process.stdout.write(`\nagent ${"AB"[i]}, hottest symbols (share of the agent's samples):\n`);
      for (const [sym, v] of [...map].sort((a, b) => b[1] - a[1]).slice(0, TOP)) process.stdout.write(`  ${((v / totals[i]!) * 100).toFixed(1)}%  ${sym.slice(0, 110)}\n`);
    });
  } finally {
    await m.stop();
    server.kill();
    rmSync(dir, { recursive: true, force: true });
    // --perf-basic-prof makes V8 log code events to isolate-*-<pid>-v8.log in the agents' working directory.
    for (const f of readdirSync(".")) if (m.pids.some((pid) => f.startsWith("isolate-") && f.endsWith(`-${pid}-v8.log`))) rmSync(f, { force: true });
  }
}

await main();
