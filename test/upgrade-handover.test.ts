import { mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { holdConnection, startCluster, startLoad, type AgentProcess, type Cluster, type LoadConnection } from "@zt/harness";
import { run, startEchoServer } from "@zt/lab";
import { until } from "./support/metrics.js";
import { NO_RULES, nodeRules } from "./support/node-rules.js";

// Upgrades without a plaintext window, through real agent processes in an emulated cluster
// (REDIRECT_MODE=tproxy, root; fails, never skips): a successor starts next to the running
// agent (SO_REUSEPORT listeners, the node rules converged, not replaced), then the old one
// gets SIGTERM and drains; it leaves the rules to the successor. With no successor, SIGTERM
// removes them; a crash leaves them, and capture fails closed until the next agent.
let c: Cluster;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("upgrade tests need root (CI runs as root): run `sudo npm test`");
  c = await startCluster({
    nodes: [
      { name: "node-a", pods: [{ name: "sleep-a", serviceAccount: "sleep" }, { name: "echo-a", serviceAccount: "echo" }] },
      { name: "node-b", pods: [{ name: "echo-b", serviceAccount: "echo" }] },
    ],
    // Long enough for the steps below to run inside an old agent's drain.
    env: { DRAIN_TIMEOUT: "4s" },
  });
}, 60_000);

afterAll(async () => {
  await c?.stop();
}, 30_000);

const ip = (pod: string): string => c.pod(pod).ip;
const nodeOfPod = (pod: string): string => c.pod(pod).node;
/** Every agent process ever started per node, so that logs of replaced agents still count. */
const history = new Map<string, AgentProcess[]>();
const remember = (a: AgentProcess): AgentProcess => {
  history.set(a.node, [...(history.get(a.node) ?? []), a]);
  return a;
};
const agentsOf = (node: string): AgentProcess[] => [...new Set([...(history.get(node) ?? []), c.agent(node)])];
const logged = (a: AgentProcess, msg: string): boolean => a.logs.some((l) => l["msg"] === msg);
const socketsIn = (node: string): string[] => readdirSync(path.join(c.dir, "handover", node)).filter((f) => f.endsWith(".sock"));

/** Failed load connections, each with what the source node's agents logged for it. */
const failures = (conns: readonly LoadConnection[]): unknown[] =>
  conns.filter((x) => !x.ok).map((x) => ({ ...x, logged: agentsOf("node-a").flatMap((a) => a.accessLogs().filter((l) => l["src.addr"] === x.local).map((l) => l["error"])) }));

/** Fail (rather than hang) when `p` does not settle in time. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Load connections that came through the mesh: each has its one inbound access log line, with the client's identity.
 * Only lines written since `since` (epoch ms) count: a source port of this load may have served an earlier test's too.
 */
async function throughMesh(conns: readonly LoadConnection[], target: string, since: number): Promise<void> {
  const node = nodeOfPod(target);
  const identity = c.pod("sleep-a").identity;
  // A source port can come back in a later connection: one line per connection from each address.
  const byLocal = new Map<string, number>();
  for (const conn of conns.filter((x) => x.target === `${ip(target)}:8080`)) byLocal.set(conn.local, (byLocal.get(conn.local) ?? 0) + 1);
  for (const [local, n] of byLocal) {
    const lines = await until(
      `inbound access log on ${node} for ${local}`,
      () => agentsOf(node).flatMap((a) => a.accessLogs().filter((l) => l["direction"] === "inbound" && l["src.addr"] === local && Date.parse(String(l["time"])) >= since)),
      (l) => l.length >= n,
    );
    expect(lines).toEqual(Array.from({ length: n }, () => expect.objectContaining({ "src.identity": identity, "dst.workload": target })));
  }
  const seen = new Set(c.echoes(target).map((e) => e.sha256));
  expect(conns.filter((x) => x.target === `${ip(target)}:8080` && !seen.has(x.sha256))).toEqual([]);
}

/** Replace `node`'s agent by a new process while `load` runs and `held` is open on the old one. */
async function replace(node: string, loadTargets: string[]): Promise<{ old: AgentProcess; successor: AgentProcess; conns: LoadConnection[]; since: number }> {
  const since = Date.now();
  const old = remember(c.agent(node));
  const rules = await nodeRules(c, node);
  const load = await startLoad(c.lab, c.pod("sleep-a").ns, loadTargets.map((t) => ({ host: ip(t), port: 8080 })), { concurrency: 2 });
  const held = await holdConnection(c.lab, c.pod("sleep-a").ns, ip("echo-b"), 8080);
  expect(await held.send(4096)).toBe(true);
  await until("load through the old agent", () => load.connections.length, (n) => n >= 20, 20_000);

  const successor = remember(await c.startAgent(node));
  // Both agents take new connections; the successor converged the rules (nothing removed, nothing doubled).
  const before = load.connections.length;
  await until("load after the successor started", () => load.connections.length, (n) => n >= before + 40, 20_000);
  expect(await nodeRules(c, node)).toEqual(rules);
  const dump = JSON.parse((await successor.get("admin", "/config_dump")).body) as { capture: { handover: { predecessors: number; state: string } } };
  expect(dump.capture.handover).toMatchObject({ predecessors: 1, state: "running" });
  expect(await held.send(4096)).toBe(true);

  // The old agent drains: its connection keeps flowing until the drain window ends, then is reset.
  old.proc.kill("SIGTERM");
  await until("the old agent draining", () => logged(old, "draining"), (v) => v);
  expect(await held.send(4096)).toBe(true);
  expect(await within(held.closed, 15_000, "the held connection to end with the old agent's drain")).toMatchObject({ clean: false });
  // Logs are written asynchronously: the line may arrive just after the reset it announced.
  expect(await old.exited).toBe(0);
  expect(logged(old, "drain window over; closing the remaining connections")).toBe(true);
  expect(logged(old, "another agent of this node is running: capture rules left in force for it")).toBe(true);
  expect(logged(old, "capture rules removed")).toBe(false);
  expect(await nodeRules(c, node)).toEqual(rules);

  const afterExit = load.connections.length;
  await until("load after the old agent exited", () => load.connections.length, (n) => n >= afterExit + 40, 20_000);
  const conns = await load.stop();
  return { old, successor, conns, since };
}

describe("an agent replaced by a new process under load", () => {
  test("on the source node: no plaintext, no refused connection, the old agent's connection ends with its drain", async () => {
    const { old, successor, conns, since } = await replace("node-a", ["echo-b", "echo-a"]);
    expect(failures(conns)).toEqual([]);
    // Both agents carried part of the load: the old one before and during the overlap, the new one from it on.
    const outbound = (a: AgentProcess): number => a.accessLogs().filter((l) => l["direction"] === "outbound" && conns.some((x) => x.local === l["src.addr"])).length;
    expect(outbound(old)).toBeGreaterThan(0);
    expect(outbound(successor)).toBeGreaterThan(0);
    await throughMesh(conns, "echo-b", since);
    await throughMesh(conns, "echo-a", since);
    expect((await successor.get("readiness", "/healthz/ready")).status).toBe(200);
  }, 90_000);

  test("on the destination node: the same, with the inbound HBONE listener handed over", async () => {
    const { old, successor, conns, since } = await replace("node-b", ["echo-b"]);
    expect(failures(conns)).toEqual([]);
    const inbound = (a: AgentProcess): number => a.accessLogs().filter((l) => l["direction"] === "inbound" && conns.some((x) => x.local === l["src.addr"])).length;
    expect(inbound(old)).toBeGreaterThan(0);
    expect(inbound(successor)).toBeGreaterThan(0);
    await throughMesh(conns, "echo-b", since);
  }, 90_000);

  test("the old agent finishes a connection it accepted but had not connected yet", async () => {
    // echo-b's port 8081 drops SYNs for now: node-b's agent keeps dialling, node-a's waits for its answer.
    const podNs = c.pod("echo-b").ns;
    const echo = await startEchoServer(c.lab, podNs, ip("echo-b"), 8081);
    const drop = ["INPUT", "-p", "tcp", "--dport", "8081", "-j", "DROP"];
    await c.lab.exec(podNs, ["iptables", "-A", ...drop]);
    try {
      // An agent with a long drain window (itself a handover from the one running now).
      const previous = remember(c.agent("node-a"));
      const old = remember(await c.startAgent("node-a", { DRAIN_TIMEOUT: "20s" }));
      expect(await previous.stop()).toBe(0);
      const pending = c.flow("sleep-a", ip("echo-b"), 8081);
      // Accepted by the only agent of node-a (the client has connected and sent) before the successor starts.
      const established = async (): Promise<string> => (await c.lab.exec(c.pod("sleep-a").ns, ["ss", "-tnH", "( dport = :8081 )"])).stdout;
      await until("the client connected", established, (out) => out.trim() !== "");
      const successor = remember(await c.startAgent("node-a"));
      old.proc.kill("SIGTERM");
      await until("the old agent draining", () => logged(old, "draining"), (v) => v);
      // The destination answers again: a SYN retransmission gets through, inside the drain window.
      await c.lab.exec(podNs, ["iptables", "-D", ...drop]);
      expect(await pending).toMatchObject({ ok: true, detail: "intact" });
      expect(await old.exited).toBe(0);
      expect(old.accessLogs().filter((l) => l["dst.addr"] === `${ip("echo-b")}:8081`)).toEqual([expect.objectContaining({ direction: "outbound", msg: "connection complete" })]);
      expect(successor.accessLogs().filter((l) => l["dst.addr"] === `${ip("echo-b")}:8081`)).toEqual([]);
    } finally {
      await c.lab.exec(podNs, ["iptables", "-D", ...drop]).catch(() => undefined);
      await echo.stop();
    }
  }, 60_000);

  test("SIGTERM with no successor ends live connections with a reset after the drain, then removes every rule of the node", async () => {
    const b = c.agent("node-b");
    expect((await nodeRules(c, "node-b")).jumps).toBe(3);
    const held = await holdConnection(c.lab, c.pod("sleep-a").ns, ip("echo-b"), 8080);
    expect(await held.send(4096)).toBe(true);
    b.proc.kill("SIGTERM");
    expect(await within(held.closed, 15_000, "the held connection to end with the drain")).toMatchObject({ clean: false });
    expect(await b.exited).toBe(0);
    expect(logged(b, "capture rules removed")).toBe(true);
    expect(await nodeRules(c, "node-b")).toEqual(NO_RULES);
    expect(socketsIn("node-b")).toEqual([]);
    await c.startAgent("node-b");
    expect((await c.flow("sleep-a", ip("echo-b"), 8080)).ok).toBe(true);
  }, 60_000);
});

describe("crashes and failed starts", () => {
  test("a crash leaves the rules: traffic fails closed (never plaintext) until the next agent, which converges them", async () => {
    const first = c.agent("node-a");
    const rules = await nodeRules(c, "node-a");
    const second = remember(await c.startAgent("node-a"));
    first.proc.kill("SIGKILL");
    await first.exited;
    expect(await nodeRules(c, "node-a")).toEqual(rules);
    expect((await c.flow("sleep-a", ip("echo-b"), 8080)).ok).toBe(true);

    second.proc.kill("SIGKILL");
    await second.exited;
    expect(await nodeRules(c, "node-a")).toEqual(rules);
    const seen = c.echoes("echo-b").length;
    const inbound = c.agent("node-b").accessLogs().length;
    const dropped = await c.flow("sleep-a", ip("echo-b"), 8080);
    expect(dropped.ok).toBe(false);
    // Nothing reached the destination: not through the mesh, not around it.
    expect(c.echoes("echo-b").length).toBe(seen);
    expect(c.agent("node-b").accessLogs().length).toBe(inbound);

    const third = await c.startAgent("node-a");
    expect(await nodeRules(c, "node-a")).toEqual(rules);
    // The crashed agents' sockets were cleared; only the live one is left.
    expect(socketsIn("node-a")).toHaveLength(1);
    expect((await c.flow("sleep-a", ip("echo-b"), 8080)).ok).toBe(true);
    // Stale sockets are no successor: a SIGTERM now removes the rules.
    expect(await third.stop()).toBe(0);
    expect(await nodeRules(c, "node-a")).toEqual(NO_RULES);
    await c.startAgent("node-a");
  }, 90_000);

  test("a successor that fails to start hands the control ports back; the rules and traffic stay", async () => {
    const running = c.agent("node-a");
    const rules = await nodeRules(c, "node-a");
    // A PATH with `ip` (to enter the namespace) and no iptables: it fails after binding its listeners.
    const bin = mkdtempSync(path.join(tmpdir(), "zt-noipt-"));
    try {
      symlinkSync((await run(["sh", "-c", "command -v ip"])).stdout.trim(), path.join(bin, "ip"));
      await expect(c.startAgent("node-a", { PATH: bin })).rejects.toThrow(/CAPTURE_TOOL_MISSING/);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
    await until("control ports taken back", () => logged(running, "control ports taken back"), (v) => v, 10_000);
    expect((await running.get("readiness", "/healthz/ready")).status).toBe(200);
    expect(await nodeRules(c, "node-a")).toEqual(rules);
    expect((await c.flow("sleep-a", ip("echo-b"), 8080)).ok).toBe(true);
    expect(c.agent("node-a")).toBe(running);
  }, 60_000);
});
