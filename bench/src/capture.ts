/**
 * Capture benchmark (`bash bench/capture.sh`, root): an emulated cluster of two nodes,
 * one agent per node with REDIRECT_MODE=tproxy. The same plain-TCP client runs inside a
 * pod namespace against a sink in another pod, side by side on three paths:
 *   direct     pod outside the mesh -> pod outside the mesh on the other node (no capture)
 *   stunnel    the same pods through a stunnel pair in the two node namespaces (the TLS-tunnel baseline)
 *   mesh       mesh pod -> mesh pod on the other node (captured, HBONE between the agents)
 *   same-node  mesh pod -> mesh pod on the same node (captured, HBONE through lo)
 * Measures: throughput of one connection, new connections/s, and the round-trip time of a
 * 1 KiB echo on one connection (what a node adds to a request/response exchange).
 * Writes its section of bench/RESULTS.md (between the capture markers).
 */
import os from "node:os";
import { startStunnel } from "./stunnel.js";
import { writeResultsSection } from "./util.js";

const HARNESS = new URL("../../packages/harness/dist/index.js", import.meta.url);
const QUICK = process.env["BENCH_QUICK"] === "1";
const MiB = 1 << 20;
const BULK = (QUICK ? 64 : 512) * MiB;
const ROUNDS = QUICK ? 1 : 3;
const RATE_MS = QUICK ? 1000 : 3000;
const RTT_N = QUICK ? 2000 : 10_000;
const STUNNEL_PORT = 19000;

// argv: port. Counts bytes; after the client's FIN answers the count and ends.
const SINK = `
const net = require("node:net");
net.createServer({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on("data", (b) => { n += b.length; });
  s.on("end", () => s.end(String(n)));
  s.on("error", () => {});
}).listen(Number(process.argv[1]), process.argv[2], () => {
  // Port + 1: an echo, for the round trips.
  net.createServer((s) => { s.setNoDelay(true); s.pipe(s); s.on("error", () => {}); }).listen(Number(process.argv[1]) + 1, process.argv[2], () => process.stdout.write("listening\\n"));
});
`;

// argv: mode host port amount. bulk: send amount bytes, wait for the count; rate: for amount ms,
// 16 concurrent loops of connect, 1 byte, FIN, wait for the answer.
const CLIENT = `
const net = require("node:net");
const [mode, host, port, amount] = process.argv.slice(1);
const once = (bytes) => new Promise((resolve, reject) => {
  const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
  let reply = "";
  s.on("data", (b) => { reply += b; });
  s.on("end", () => { s.destroy(); resolve(Number(reply)); });
  s.on("error", reject);
  s.on("connect", () => {
    if (bytes <= 1) return s.end("x");
    const chunk = Buffer.alloc(256 * 1024, 1);
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return s.once("drain", pump);
      }
      s.end();
    };
    pump();
  });
});
// rtt: amount round trips of 1 KiB on one connection to the echo (port + 1), after a tenth as many unrecorded.
const rtt = (n) => new Promise((resolve, reject) => {
  const s = net.connect({ host, port: Number(port) + 1, noDelay: true });
  const msg = Buffer.alloc(1024, 7);
  const times = [];
  let got = 0, sent = 0n, i = -Math.floor(n / 10);
  const next = () => { sent = process.hrtime.bigint(); s.write(msg); };
  s.on("data", (b) => {
    got += b.length;
    if (got < msg.length) return;
    got -= msg.length;
    if (i++ >= 0) times.push(Number(process.hrtime.bigint() - sent) / 1000);
    if (times.length < n) return next();
    s.destroy();
    times.sort((a, b) => a - b);
    resolve({ p50us: times[Math.floor(n * 0.5)], p99us: times[Math.floor(n * 0.99)] });
  });
  s.on("error", reject);
  s.on("connect", next);
});
(async () => {
  const t0 = process.hrtime.bigint();
  if (mode === "rtt") {
    process.stdout.write(JSON.stringify(await rtt(Number(amount))));
  } else if (mode === "bulk") {
    const got = await once(Number(amount));
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    if (got !== Number(amount)) throw new Error("sink got " + got + " of " + amount);
    process.stdout.write(JSON.stringify({ mibPerSec: Number(amount) / 1048576 / sec }));
  } else {
    const end = Date.now() + Number(amount);
    let count = 0;
    await Promise.all(Array.from({ length: 16 }, async () => { while (Date.now() < end) { await once(1); count++; } }));
    process.stdout.write(JSON.stringify({ perSec: count / (Number(process.hrtime.bigint() - t0) / 1e9) }));
  }
})().catch((e) => { process.stderr.write(String(e) + "\\n"); process.exit(1); });
`;

interface Lab {
  prefix: string;
  namespaces: string[];
  spawn(ns: string, argv: string[], opts?: object): import("node:child_process").ChildProcess;
  exec(ns: string, argv: string[], opts?: { timeoutMs?: number }): Promise<{ stdout: string }>;
  node(name: string): { ns: string; uplinkIp: string };
}
interface Cluster {
  lab: Lab;
  pod(name: string): { ip: string; ns: string };
  stop(): Promise<void>;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const log = (s: string): void => void process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the capture benchmark needs root (network namespaces, iptables)");
  const { startCluster } = (await import(HARNESS.href)) as { startCluster(spec: unknown): Promise<Cluster> };
  const started = Date.now();
  const c = await startCluster({
    nodes: [
      { name: "node-a", pods: [{ name: "client-a" }, { name: "sink-a" }, { name: "plain-a", enrolled: false }] },
      { name: "node-b", pods: [{ name: "sink-b" }, { name: "plain-b", enrolled: false }] },
    ],
    echoPorts: [],
  });
  let stunnel: Awaited<ReturnType<typeof startStunnel>> | undefined;
  try {
    // Thousands of short connections per second would otherwise exhaust the ports in TIME_WAIT.
    for (const ns of c.lab.namespaces) await c.lab.exec(ns, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
    for (const p of ["sink-a", "sink-b", "plain-b"]) {
      const child = c.lab.spawn(c.pod(p).ns, [process.execPath, "-e", SINK, "9000", c.pod(p).ip], { stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve) => child.stdout?.once("data", () => resolve()));
    }
    const run = async (from: string, host: string, port: number, mode: string, amount: number): Promise<Record<string, number>> =>
      JSON.parse((await c.lab.exec(c.pod(from).ns, [process.execPath, "-e", CLIENT, mode, host, String(port), String(amount)], { timeoutMs: 120_000 })).stdout) as Record<string, number>;
    // The stunnel pair: its client side in node-a's namespace, its server side in node-b's, one
    // tunnel for the sink (9000) and one for the echo (9001), as the client expects them (port, port + 1).
    const [nodeA, nodeB] = [c.lab.node("node-a"), c.lab.node("node-b")];
    const plainB = c.pod("plain-b").ip;
    stunnel = await startStunnel(
      [0, 1].map((i) => ({ clientAccept: `${nodeA.uplinkIp}:${STUNNEL_PORT + i}`, serverAccept: `${nodeB.uplinkIp}:${STUNNEL_PORT + 100 + i}`, connect: `${plainB}:${9000 + i}` })),
      async () => void (await run("plain-a", nodeA.uplinkIp, STUNNEL_PORT, "bulk", 1)),
      (side, argv) => c.lab.spawn(side === "client" ? nodeA.ns : nodeB.ns, argv, { stdio: ["ignore", "pipe", "pipe"] }),
    );
    const paths = [
      { name: "direct", from: "plain-a", host: plainB, port: 9000 },
      { name: "stunnel", from: "plain-a", host: nodeA.uplinkIp, port: STUNNEL_PORT },
      { name: "mesh", from: "client-a", host: c.pod("sink-b").ip, port: 9000 },
      { name: "same-node", from: "client-a", host: c.pod("sink-a").ip, port: 9000 },
    ];
    const bulk: Record<string, number[]> = {};
    const rate: Record<string, number[]> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of paths) {
        (bulk[p.name] ??= []).push((await run(p.from, p.host, p.port, "bulk", BULK))["mibPerSec"] ?? NaN);
        log(`round ${r + 1} ${p.name}: ${bulk[p.name]!.at(-1)!.toFixed(0)} MiB/s`);
      }
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of paths) {
        (rate[p.name] ??= []).push((await run(p.from, p.host, p.port, "rate", RATE_MS))["perSec"] ?? NaN);
        log(`round ${r + 1} ${p.name}: ${rate[p.name]!.at(-1)!.toFixed(0)} conn/s`);
        // Let TIME_WAIT from this burst drain a little before the next path.
        await new Promise((res) => setTimeout(res, 2000));
      }
    }
    const p50: Record<string, number[]> = {};
    const p99: Record<string, number[]> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of r % 2 ? [...paths].reverse() : paths) {
        const x = await run(p.from, p.host, p.port, "rtt", RTT_N);
        (p50[p.name] ??= []).push(x["p50us"] ?? NaN);
        (p99[p.name] ??= []).push(x["p99us"] ?? NaN);
        log(`round ${r + 1} ${p.name}: RTT p50 ${x["p50us"]?.toFixed(0)} us, p99 ${x["p99us"]?.toFixed(0)} us`);
      }
    }
    const added = (m: Record<string, number[]>, k: string): string => `${(median(m[k] ?? []) - median(m["direct"] ?? [])).toFixed(0)}`;
    const row = (label: string, m: Record<string, number[]>, digits = 0): string => {
      const v = (k: string): number => median(m[k] ?? []);
      const f = (x: number): string => x.toLocaleString("en-US", { maximumFractionDigits: digits });
      return `| ${label} | ${f(v("direct"))} | ${f(v("stunnel"))} | ${f(v("mesh"))} | ${f(v("same-node"))} | ${(v("mesh") / v("direct")).toFixed(2)}x | ${(v("mesh") / v("stunnel")).toFixed(2)}x | ${(v("same-node") / v("direct")).toFixed(2)}x |`;
    };
    const section = [
      "<!-- capture:begin -->",
      "## Captured traffic in an emulated cluster",
      "",
      "```",
      "sudo bash bench/capture.sh",
      "```",
      "",
      `- Date: ${new Date().toISOString()}; ${os.cpus().length} CPUs; Node ${process.version}; ${ROUNDS} rounds, medians; ${((Date.now() - started) / 1000).toFixed(0)} s`,
      "- Two emulated nodes (network namespaces, pods behind veths), one agent per node with `REDIRECT_MODE=tproxy`.",
      "  The same plain-TCP client runs in a pod namespace; nothing in the pod knows about the mesh.",
      "  direct: pod outside the mesh to a pod outside the mesh on the other node (not captured);",
      "  stunnel: the same two pods through a stunnel pair, its client side in node-a's namespace and its server side in node-b's",
      "  (TLS 1.3, client certificate verified, as in the loopback bench);",
      "  mesh: mesh pod to mesh pod on the other node (captured, HBONE); same-node: mesh pods on one node (captured, HBONE via lo).",
      "  `net.ipv4.tcp_tw_reuse=1` in every namespace of the cluster (ports in TIME_WAIT would otherwise limit the connection rate).",
      "",
      "| Measure | direct | stunnel | mesh | same-node | mesh/direct | mesh/stunnel | same-node/direct |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
      row(`Throughput, 1 conn, ${BULK / MiB} MiB (MiB/s)`, bulk),
      row("New connections/s (16 concurrent, 1 byte each way)", rate),
      row(`RTT p50, 1 KiB echo, one connection (us; ${RTT_N.toLocaleString("en-US")} round trips)`, p50),
      row("RTT p99 (us)", p99),
      "",
      `Added to the round trip by the mesh: p50 ${added(p50, "mesh")} us, p99 ${added(p99, "mesh")} us between nodes; p50 ${added(p50, "same-node")} us, p99 ${added(p99, "same-node")} us on one node;`,
      `by the stunnel pair: p50 ${added(p50, "stunnel")} us, p99 ${added(p99, "stunnel")} us`,
      `(ZTUNNEL_WORKER_THREADS ${process.env["ZTUNNEL_WORKER_THREADS"] ?? "2"}, the agents' default). The issue's goal: p99 added ≤ 200 us.`,
      "<!-- capture:end -->",
    ].join("\n");
    writeResultsSection("capture", section, QUICK);
    process.stdout.write(`\n${section}\n`);
  } finally {
    await stunnel?.stop();
    await c.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`capture bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
