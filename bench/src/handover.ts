/**
 * Handover measurement (`sudo bash bench/handover.sh`, root): in an emulated cluster, a mesh
 * pod keeps opening connections (to a pod on the other node and to one on its own node)
 * while the agents of both nodes are replaced again and again by new processes (successor
 * started, then SIGTERM to the old one). Counts the connections that failed, with
 * net.ipv4.tcp_migrate_req off and on. Writes its section of bench/RESULTS.md.
 * Nothing is asserted: the tests (test/upgrade-handover.test.ts) do that.
 */
import os from "node:os";
import { agentWorkers, writeResultsSection } from "./util.js";

const HARNESS = new URL("../../packages/harness/dist/index.js", import.meta.url);
const QUICK = process.env["BENCH_QUICK"] === "1";
const CYCLES = QUICK ? 2 : 6;
const CONCURRENCY = 8;

interface LoadConnection {
  target: string;
  local: string;
  ok: boolean;
  error?: string;
}
interface Agent {
  node: string;
  proc: { kill(sig: string): void };
  exited: Promise<number | null>;
  accessLogs(): Record<string, unknown>[];
}
interface Cluster {
  lab: unknown;
  pod(name: string): { ip: string; ns: string };
  agent(node: string): Agent;
  startAgent(node: string): Promise<Agent>;
  stop(): Promise<void>;
}
interface Harness {
  startCluster(spec: unknown): Promise<Cluster>;
  startLoad(lab: unknown, ns: string, targets: { host: string; port: number }[], opts: { concurrency: number }): Promise<{ connections: LoadConnection[]; stop(): Promise<LoadConnection[]> }>;
}

const log = (s: string): void => void process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  migrate: boolean;
  replacements: number;
  connections: number;
  failed: number;
  errors: Record<string, number>;
}

async function measure(h: Harness, migrate: boolean): Promise<Outcome> {
  const c = await h.startCluster({
    nodes: [
      { name: "node-a", pods: [{ name: "sleep-a", serviceAccount: "sleep" }, { name: "echo-a", serviceAccount: "echo" }] },
      { name: "node-b", pods: [{ name: "echo-b", serviceAccount: "echo" }] },
    ],
    env: { DRAIN_TIMEOUT: "1s" },
    tcpMigrateReq: migrate,
  });
  const agents: Agent[] = [c.agent("node-a"), c.agent("node-b")];
  try {
    const load = await h.startLoad(c.lab, c.pod("sleep-a").ns, ["echo-b", "echo-a"].map((p) => ({ host: c.pod(p).ip, port: 8080 })), { concurrency: CONCURRENCY });
    let replacements = 0;
    for (let i = 0; i < CYCLES; i++) {
      for (const node of ["node-a", "node-b"]) {
        const old = c.agent(node);
        agents.push(await c.startAgent(node));
        await sleep(500);
        old.proc.kill("SIGTERM");
        await old.exited;
        replacements++;
        await sleep(500);
      }
      log(`tcp_migrate_req=${migrate ? 1 : 0}: ${replacements} replacements, ${load.connections.length} connections, ${load.connections.filter((x) => !x.ok).length} failed`);
    }
    const conns = await load.stop();
    const errors: Record<string, number> = {};
    for (const x of conns.filter((y) => !y.ok)) {
      // What the source agent logged for it, if it got that far; else what the client saw.
      const lines = agents.flatMap((a) => a.accessLogs().filter((l) => l["src.addr"] === x.local));
      if (process.env["BENCH_DEBUG"]) log(`failed ${JSON.stringify(x)}: ${JSON.stringify(lines)}`);
      // Ports get reused: a line without an error for the same client address is an earlier connection's.
      const logged = [...new Set(lines.map((l) => l["error"]).filter((e) => e !== undefined).map((e) => String(e).split(":")[0]))];
      const why = `${x.error ?? "short echo"}${logged.length > 0 ? ` (agent: ${logged.join(", ")})` : " (no agent logged it: reset by the kernel)"}`;
      errors[why] = (errors[why] ?? 0) + 1;
    }
    return { migrate, replacements, connections: conns.length, failed: conns.filter((x) => !x.ok).length, errors };
  } finally {
    await c.stop();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the handover measurement needs root (network namespaces, iptables)");
  const h = (await import(HARNESS.href)) as Harness;
  const started = Date.now();
  const outcomes = [await measure(h, false), await measure(h, true)];
  const section = [
    "<!-- handover:begin -->",
    "## Agents replaced under load",
    "",
    "```",
    "sudo bash bench/handover.sh",
    "```",
    "",
    `- Date: ${new Date().toISOString()}; ${os.cpus().length} CPUs; Node ${process.version}; ${((Date.now() - started) / 1000).toFixed(0)} s; ${agentWorkers()}`,
    `- Two emulated nodes, one \`REDIRECT_MODE=tproxy\` agent each. A mesh pod on node-a runs ${CONCURRENCY} loops per target`,
    "  (a pod on node-b, a pod on node-a) of connect, 16 KiB each way, close. Meanwhile each node's agent is replaced",
    "  again and again: a successor started next to it, 0.5 s, SIGTERM to the old one (`DRAIN_TIMEOUT=1s`), its exit, 0.5 s.",
    "  A failed connection is one whose echo did not come back whole (reset, refused, timeout).",
    "",
    "| net.ipv4.tcp_migrate_req | replacements | connections | failed | why |",
    "|---:|---:|---:|---:|---|",
    ...outcomes.map((o) => `| ${o.migrate ? 1 : 0} | ${o.replacements} | ${o.connections} | ${o.failed} | ${Object.entries(o.errors).map(([k, v]) => `${v}× ${k}`).join("; ") || "-"} |`),
    "<!-- handover:end -->",
  ].join("\n");
  writeResultsSection("handover", section, QUICK);
  process.stdout.write(`\n${section}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`handover measurement failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
