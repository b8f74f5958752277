/**
 * zt-controller's delta xDS push (`bash bench/controller-push.sh`): the xDS server of
 * @zt/controller over TLS gRPC on loopback with 10,000 workloads, 2,000 services and 20
 * policies, and 50 raw delta xDS clients (grpc-js bidi calls, each its own connection)
 * in a child process, so that the server's process does the server's work only.
 * Measures: the first sync (both types, wildcard) of all 50 until the server has every
 * ACK, and the bytes it sent; then one pod change at a time, from store.apply to the
 * moment all 50 clients have it, p50/p99 over 50 changes; CPU of the server's process.
 * Writes its section of bench/RESULTS.md. Asserts nothing.
 */
import { fork } from "node:child_process";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { createXdsServer } from "../../packages/controller/dist/index.js";
import { connectRawAds, startTlsAdsServer } from "../../packages/controller/dist/test-support/ads-client.js";
import { podWorkload, policy, service } from "../../packages/controller/dist/test-support/mesh.js";
import { ADDRESS_TYPE, AUTHORIZATION_TYPE } from "../../packages/istio/dist/index.js";
import { createMeshStore, type Workload } from "../../packages/state/dist/index.js";
import { percentile, writeResultsSection } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
const WORKLOADS = QUICK ? 1000 : 10_000;
const SERVICES = WORKLOADS / 5;
const CLIENTS = 50;
const CHANGES = 50;
const TYPES = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

type FromClients = { kind: "ready" } | { kind: "synced"; bytes: number; cpuMs: number } | { kind: "reached"; change: number; bytes: number; cpuMs: number };
type ToClients = { kind: "start"; port: number; rootPem: string };

/** The child: 50 clients that ACK every response; says when all have their first two responses, and then each change. */
function clientsMain(): void {
  const send = (m: FromClients): void => void process.send!(m);
  process.on("message", (m: ToClients) => {
    if (m.kind !== "start") return;
    const clients = Array.from({ length: CLIENTS }, (_, i) => connectRawAds(m.port, m.rootPem, { nodeId: `ztunnel~10.1.0.${i}~zt-${i}.istio-system~istio-system.svc.cluster.local`, autoAck: true, keepResponses: false }));
    const seen = new Array<number>(CLIENTS).fill(0);
    let atLeast = 0;
    const bytes = (): number => clients.reduce((n, c) => n + c.bytes, 0);
    const cpu0 = process.cpuUsage();
    const cpuMs = (): number => {
      const u = process.cpuUsage(cpu0);
      return (u.user + u.system) / 1000;
    };
    clients.forEach((c, i) => {
      c.onResponse = () => {
        seen[i]!++;
        // Responses 1 and 2 are the first sync (one per type); each one after that is one change.
        const min = Math.min(...seen);
        while (atLeast < min) {
          atLeast++;
          if (atLeast === 2) send({ kind: "synced", bytes: bytes(), cpuMs: cpuMs() });
          else if (atLeast > 2) send({ kind: "reached", change: atLeast - 2, bytes: bytes(), cpuMs: cpuMs() });
        }
      };
      c.subscribe(TYPES);
    });
    process.on("disconnect", () => {
      for (const c of clients) c.close();
      process.exit(0);
    });
  });
  send({ kind: "ready" });
}

async function main(): Promise<void> {
  const workloads: Workload[] = Array.from({ length: WORKLOADS }, (_, i) => podWorkload(i));
  const services = Array.from({ length: SERVICES }, (_, i) => service(i));
  const policies = Array.from({ length: 20 }, (_, i) =>
    i % 2 === 0 ? policy(`ns-policy-${i}`, `ns-${i % 10}`) : policy(`by-app-${i}`, `ns-${i % 10}`, { scope: "WorkloadSelector", selector: new Map([["app", `app-${i}`]]) }),
  );
  const store = createMeshStore();
  const logger = pino({ level: "warn" }, new Writable({ write: (_c, _e, cb) => cb() }));
  const t0 = performance.now();
  store.replace({ workloads, services, policies });
  // The benchmark's clients present no token: an authenticate that accepts every caller (never the controller's).
  const acceptEveryCaller = async (): Promise<{ name: string }> => ({ name: "bench client (accepted without authentication)" });
  const xds = createXdsServer({ store, logger, authenticate: acceptEveryCaller });
  const tableMs = performance.now() - t0;
  const tls = await startTlsAdsServer(xds.implementation);

  const child = fork(fileURLToPath(import.meta.url), ["clients"], { stdio: "inherit" });
  const waiters: ((m: FromClients) => boolean)[] = [];
  child.on("message", (m: FromClients) => {
    const w = waiters[0];
    if (w?.(m)) waiters.shift();
  });
  const until = (pred: (m: FromClients) => boolean): Promise<FromClients> =>
    new Promise((resolve) => waiters.push((m) => (pred(m) ? (resolve(m), true) : false)));
  await until((m) => m.kind === "ready");

  const allAcked = (): boolean => {
    const cs = xds.clients();
    return cs.length === CLIENTS && cs.every((c) => TYPES.every((t) => c.types[t]?.lastNonceAcked !== null && c.types[t]?.lastNonceAcked === c.types[t]?.lastNonceSent));
  };
  const cpu0 = process.cpuUsage();
  const s0 = performance.now();
  child.send({ kind: "start", port: tls.port, rootPem: tls.rootPem } satisfies ToClients);
  const synced = (await until((m) => m.kind === "synced")) as Extract<FromClients, { kind: "synced" }>;
  const receivedMs = performance.now() - s0;
  const waitAcked = async (): Promise<void> => {
    while (!allAcked()) await new Promise((r) => setTimeout(r, 1));
  };
  await waitAcked();
  const ackedMs = performance.now() - s0;
  const syncCpu = process.cpuUsage(cpu0);
  const syncRss = process.memoryUsage().rss;
  const statsAfterSync = xds.stats();

  const lat = new Float64Array(CHANGES);
  let changeBytes = 0;
  let childChangeCpu = 0;
  const cpu1 = process.cpuUsage();
  const encodes0 = xds.stats().encodes;
  for (let k = 1; k <= CHANGES; k++) {
    await waitAcked();
    const i = (k * 197) % WORKLOADS;
    const reached = until((m) => m.kind === "reached" && m.change === k);
    const t = performance.now();
    store.apply({ workloads: [podWorkload(i, { status: k % 2 === 0 ? "Healthy" : "Unhealthy", node: `node-moved-${k}` })] });
    const m = (await reached) as Extract<FromClients, { kind: "reached" }>;
    lat[k - 1] = performance.now() - t;
    changeBytes = m.bytes - synced.bytes;
    childChangeCpu = m.cpuMs - synced.cpuMs;
  }
  const changeCpu = process.cpuUsage(cpu1);
  const encodesPerChange = (xds.stats().encodes - encodes0) / CHANGES;
  const p50 = percentile(lat, CHANGES, 50);
  const p99 = percentile(lat, CHANGES, 99);
  const max = percentile(lat, CHANGES, 100);

  child.disconnect();
  xds.close();
  await tls.close();

  const mib = (b: number): string => (b / 1048576).toFixed(1);
  const ms = (x: number): string => x.toFixed(1);
  const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
  const rows = [
    ["resource table: encode everything once (ms)", `${ms(tableMs)} (${statsAfterSync.resources[ADDRESS_TYPE]} addresses, ${statsAfterSync.resources[AUTHORIZATION_TYPE]} authorizations)`],
    [`first sync, ${CLIENTS} clients: all have both responses (ms)`, ms(receivedMs)],
    [`first sync: the server has all ${CLIENTS * 2} ACKs (ms)`, ms(ackedMs)],
    ["first sync: response bytes, total / per client (MiB)", `${mib(synced.bytes)} / ${mib(synced.bytes / CLIENTS)}`],
    ["first sync: CPU of the server's process / the clients' process (ms)", `${ms(cpuMs(syncCpu))} / ${ms(synced.cpuMs)}`],
    ["server process RSS after the first sync (MiB)", mib(syncRss)],
    [`one pod change reaching all ${CLIENTS}: p50 / p99 / max (ms, ${CHANGES} changes)`, `${ms(p50)} / ${ms(p99)} / ${ms(max)}`],
    ["one pod change: bytes to all clients; resources encoded; CPU server / clients (ms)", `${Math.round(changeBytes / CHANGES)} ; ${encodesPerChange} ; ${ms(cpuMs(changeCpu) / CHANGES)} / ${ms(childChangeCpu / CHANGES)}`],
  ];
  const section = [
    "<!-- controller-push:begin -->",
    "## zt-controller: delta xDS push to 50 clients",
    "",
    "```",
    "bash bench/controller-push.sh",
    "```",
    "",
    `- Date: ${new Date().toISOString()}; ${(await import("node:os")).cpus().length} CPUs; Node ${process.version}${QUICK ? "; QUICK" : ""}`,
    `- The xDS server of @zt/controller (createXdsServer) in a grpc-js server over TLS on 127.0.0.1, the store holding ${WORKLOADS.toLocaleString("en")} workloads,`,
    `  ${SERVICES.toLocaleString("en")} services and 20 policies (10 with a selector); ${CLIENTS} raw delta xDS clients (each its own connection, wildcard on both types,`,
    "  ACKing every response) in a child process on the same 2 CPUs. Bytes: the gRPC message bodies the clients received (TLS and HTTP/2 framing not counted).",
    "- A change: store.apply of one pod (status and node) with the server's previous push ACKed by all; latency from the apply to the",
    `  child reporting that all ${CLIENTS} have the response (over the child's IPC channel).`,
    "- Each resource is encoded once (\"resources encoded\"), and so is its Resource message (cached by @zt/istio's encodeDeltaResponse);",
    "  per client, the server writes each response's envelope around those bytes (a copy) and encrypts it.",
    "",
    "| Measure | value |",
    "|---|---:|",
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
    "",
    "<!-- controller-push:end -->",
  ].join("\n");
  process.stdout.write(`${section}\n`);
  process.stdout.write(`wrote ${writeResultsSection("controller-push", section, QUICK)}\n`);
}

if (process.argv[2] === "clients") clientsMain();
else
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
