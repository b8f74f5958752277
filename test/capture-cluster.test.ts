import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startCluster, type AgentProcess, type Cluster } from "@zt/harness";
import { listNamespaces, run, startEchoServer } from "@zt/lab";
import { counter, until } from "./support/metrics.js";
import { nodeRules as rulesOf } from "./support/node-rules.js";

// An emulated cluster with real capture: pods in their own namespaces behind veths,
// agents in the node namespaces with REDIRECT_MODE=tproxy. Needs root: fails, never skips.
const VIP = "198.18.128.30";
let c: Cluster;
let prefix = "";

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("capture tests need root (CI runs as root): run `sudo npm test`");
  c = await startCluster({
    nodes: [
      { name: "node-a", pods: [{ name: "sleep-a", serviceAccount: "sleep" }, { name: "echo-a", serviceAccount: "echo" }, { name: "plain-a", enrolled: false }] },
      { name: "node-b", pods: [{ name: "echo-b", serviceAccount: "echo" }, { name: "legacy-b", enrolled: false, namespace: "legacy" }] },
    ],
    services: [{ name: "echo", vip: VIP, port: 80, targetPort: 8080, pods: ["echo-b"] }],
    policies: ["{name: deny-9999, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [9999]}]]]}"],
    echoPorts: [8080, 9999],
  });
  prefix = c.lab.prefix;
}, 60_000);

afterAll(async () => {
  await c?.stop();
  if (!prefix) return;
  // Everything the suite made lived in its namespaces; the host namespace was never touched.
  expect((await listNamespaces()).filter((ns) => ns.startsWith(prefix))).toEqual([]);
  expect((await run(["ipset", "list", "-n"])).stdout).not.toMatch(/ztunnel/);
  expect((await run(["iptables-save"])).stdout).not.toMatch(/ZTUNNEL/);
}, 30_000);

const ip = (pod: string): string => c.pod(pod).ip;
const ns = (node: string): string => c.lab.node(node).ns;
const logFor = (a: AgentProcess, direction: string, srcAddr: string): Promise<Record<string, unknown>> =>
  until(
    `${a.node} ${direction} access log for ${srcAddr}`,
    () => a.accessLogs().find((l) => l["direction"] === direction && l["src.addr"] === srcAddr),
    (l) => l !== undefined,
  ) as Promise<Record<string, unknown>>;
const logWithError = (a: AgentProcess, code: string): Promise<Record<string, unknown> | undefined> =>
  until(`${a.node} access log with ${code}`, () => a.accessLogs().find((l) => String(l["error"] ?? "").startsWith(`${code}:`)), (l) => l !== undefined);

const nodeRules = (node: string): ReturnType<typeof rulesOf> => rulesOf(c, node);

describe("captured traffic, no change to the pods", () => {
  test("pod -> service VIP on another node: kube-proxy's DNAT is bypassed, the agent balances, bytes intact, source kept", async () => {
    const r = await c.flow("sleep-a", VIP, 80);
    expect(r).toMatchObject({ ok: true, detail: "intact" });
    expect(r.seenByDestination?.split(":")[0]).toBe(ip("sleep-a"));
    const out = await logFor(c.agent("node-a"), "outbound", r.client);
    expect(out).toMatchObject({ "dst.service": "echo.default.svc.cluster.local", "dst.workload": "echo-b", "dst.hbone_addr": `${ip("echo-b")}:15008` });
    const inb = await logFor(c.agent("node-b"), "inbound", r.client);
    expect(inb).toMatchObject({ "src.identity": c.pod("sleep-a").identity, "dst.workload": "echo-b" });
  });

  test("pod -> pod IP on another node over HBONE; the destination pod sees the source pod's IP", async () => {
    const r = await c.flow("sleep-a", ip("echo-b"), 8080, 300_000);
    expect(r).toMatchObject({ ok: true, bytes: 300_000 });
    expect(r.seenByDestination?.split(":")[0]).toBe(ip("sleep-a"));
    expect(await logFor(c.agent("node-b"), "inbound", r.client)).toMatchObject({ "src.identity": c.pod("sleep-a").identity, "bytes_recv": expect.anything() });
  });

  test("pod -> pod on the same node goes through the agent's own HBONE inbound: identity, policy and metrics as cross-node", async () => {
    const a = c.agent("node-a");
    const r = await c.flow("sleep-a", ip("echo-a"), 8080);
    expect(r).toMatchObject({ ok: true, detail: "intact" });
    expect(r.seenByDestination?.split(":")[0]).toBe(ip("sleep-a"));
    expect(await logFor(a, "inbound", r.client)).toMatchObject({ "src.identity": c.pod("sleep-a").identity, "dst.workload": "echo-a" });
    const metrics = (await a.get("stats", "/metrics")).body;
    expect(counter(metrics, "istio_tcp_connections_opened_total", { reporter: "destination", destination_workload: "echo-a", source_principal: c.pod("sleep-a").identity })).toBeGreaterThanOrEqual(1);
    const denied = await c.flow("sleep-a", ip("echo-a"), 9999);
    expect(denied.ok).toBe(false);
    expect(await logWithError(a, "AUTHZ_DENIED")).toMatchObject({ direction: "inbound", "dst.workload": "echo-a" });
  });

  test("mesh pod -> pod outside the mesh: plain passthrough, source kept", async () => {
    const r = await c.flow("sleep-a", ip("legacy-b"), 8080);
    expect(r).toMatchObject({ ok: true, detail: "intact" });
    expect(r.seenByDestination?.split(":")[0]).toBe(ip("sleep-a"));
    const out = await logFor(c.agent("node-a"), "outbound", r.client);
    expect(out["dst.hbone_addr"]).toBeUndefined();
    expect(out["error"]).toBeUndefined();
  });

  test("pod outside the mesh -> mesh pod arrives on 15006 (other node and same node), source kept, no identity", async () => {
    for (const from of ["legacy-b", "plain-a"]) {
      const r = await c.flow(from, ip("echo-a"), 8080);
      expect(r).toMatchObject({ ok: true, detail: "intact" });
      expect(r.seenByDestination?.split(":")[0]).toBe(ip(from));
      const inb = await logFor(c.agent("node-a"), "inbound", r.client);
      expect(inb["src.identity"]).toBeUndefined();
      expect(inb["dst.workload"]).toBe("echo-a");
    }
  });

  test("policy applies to captured plaintext too", async () => {
    const r = await c.flow("legacy-b", ip("echo-b"), 9999);
    expect(r.ok).toBe(false);
    expect(await logWithError(c.agent("node-b"), "AUTHZ_DENIED")).toMatchObject({ direction: "inbound", "src.addr": expect.stringContaining(ip("legacy-b")) });
  });
});

describe("bad input through capture", () => {
  test("a pod dialling the agent's own ports is refused with a named error", async () => {
    const nodeIp = c.lab.node("node-a").uplinkIp;
    expect((await c.flow("sleep-a", nodeIp, 15001)).ok).toBe(false);
    expect(await logWithError(c.agent("node-a"), "LOOP")).toMatchObject({ "dst.addr": `${nodeIp}:15001` });
    // Raw TCP to another mesh pod's HBONE port: refused at the source, never tunnelled.
    expect((await c.flow("sleep-a", ip("echo-b"), 15008)).ok).toBe(false);
    await until("LOOP for echo-b:15008", () => c.agent("node-a").accessLogs().some((l) => l["dst.addr"] === `${ip("echo-b")}:15008` && String(l["error"]).startsWith("LOOP:")), (v) => v);
    // Plain TCP from outside the mesh to a mesh pod's 15008 reaches the HBONE listener, which wants mTLS.
    // The flow's bytes are random: OpenSSL mostly names them not TLS (NOT_TLS), now and then a malformed handshake (TLS_FAILURE).
    expect((await c.flow("legacy-b", ip("echo-a"), 15008)).ok).toBe(false);
    const refused = await until(
      "a TLS refusal on node-a",
      () => c.agent("node-a").accessLogs().find((l) => String(l["src.addr"]).startsWith(`${ip("legacy-b")}:`) && l["dst.addr"] === `${ip("echo-a")}:15008`),
      (l) => l !== undefined,
    );
    expect(refused).toMatchObject({ response_flags: "TLS_FAILURE", error: expect.stringMatching(/^(NOT_TLS|TLS_FAILURE): HBONE client /) });
  });

  test("an IP that left the node leaves the captured set; traffic to it is no longer captured", async () => {
    const original = readFileSync(c.workloadsFile, "utf8");
    const dump = async (): Promise<{ capture: { pods: string[] } }> => JSON.parse((await c.agent("node-a").get("admin", "/config_dump")).body) as { capture: { pods: string[] } };
    expect((await dump()).capture.pods).toContain(ip("echo-a"));
    try {
      writeFileSync(c.workloadsFile, original.replace(/^- \{name: echo-a,.*\n/m, ""));
      await until("echo-a out of node-a's set", dump, (d) => !d.capture.pods.includes(ip("echo-a")), 10_000);
      const set = (await c.lab.exec(ns("node-a"), ["ipset", "list", "ztunnel-pods-ips"])).stdout;
      expect(set).not.toContain(ip("echo-a"));
      const before = c.agent("node-a").accessLogs().length;
      const r = await c.flow("plain-a", ip("echo-a"), 8080);
      expect(r).toMatchObject({ ok: true, detail: "intact" });
      await new Promise((res) => setTimeout(res, 200));
      expect(c.agent("node-a").accessLogs().slice(before).filter((l) => l["src.addr"] === r.client)).toEqual([]);
    } finally {
      writeFileSync(c.workloadsFile, original);
      await until("echo-a back in node-a's set", dump, (d) => d.capture.pods.includes(ip("echo-a")), 10_000);
    }
  });
});

describe("rules over the agent's life", () => {
  test("SIGTERM removes every rule; a restart installs them once; REGISTRY_ONLY refuses unknown destinations", async () => {
    const installed = await nodeRules("node-a");
    expect(installed).toMatchObject({ jumps: 3, ipRules: 1, sets: ["ztunnel-pods-ips"] });
    expect(installed.rules).toBeGreaterThan(5);
    expect(await c.agent("node-a").stop()).toBe(0);
    expect(await nodeRules("node-a")).toEqual({ jumps: 0, rules: 0, ipRules: 0, sets: [] });

    // An address outside the registry: node-b's own uplink, serving an echo in node-b's namespace.
    const nodeB = c.lab.node("node-b").uplinkIp;
    const echo = await startEchoServer(c.lab, ns("node-b"), nodeB, 8081);
    try {
      const strict = await c.startAgent("node-a", { OUTBOUND_TRAFFIC_POLICY: "REGISTRY_ONLY" });
      expect(await nodeRules("node-a")).toEqual(installed);
      const refused = await c.flow("sleep-a", nodeB, 8081);
      expect(refused.ok).toBe(false);
      expect(await logWithError(strict, "REGISTRY_ONLY")).toMatchObject({ "dst.addr": `${nodeB}:8081` });
      expect(echo.connections).toEqual([]);
      await strict.stop();

      const open = await c.startAgent("node-a");
      const r = await c.flow("sleep-a", nodeB, 8081);
      expect(r).toMatchObject({ ok: true, detail: "intact" });
      expect(open.accessLogs().some((l) => l["dst.addr"] === `${nodeB}:8081`)).toBe(true);
    } finally {
      await echo.stop();
    }
  }, 60_000);

  test("after a crash (SIGKILL, rules left behind) a restart converges: one copy of each rule, traffic flows", async () => {
    const before = await nodeRules("node-a");
    c.agent("node-a").proc.kill("SIGKILL");
    await c.agent("node-a").exited;
    expect(await nodeRules("node-a")).toEqual(before);
    await c.startAgent("node-a");
    expect(await nodeRules("node-a")).toEqual(before);
    const r = await c.flow("sleep-a", ip("echo-b"), 8080);
    expect(r).toMatchObject({ ok: true, detail: "intact" });
  }, 60_000);

  test("missing iptables or an unloadable addon: the agent refuses to start, names the problem, installs nothing", async () => {
    await c.agent("node-a").stop();
    expect(await nodeRules("node-a")).toEqual({ jumps: 0, rules: 0, ipRules: 0, sets: [] });
    const bin = mkdtempSync(path.join(tmpdir(), "zt-nobin-"));
    try {
      const ipPath = (await run(["sh", "-c", "command -v ip"])).stdout.trim();
      symlinkSync(ipPath, path.join(bin, "ip"));
      await expect(c.startAgent("node-a", { PATH: bin })).rejects.toThrow(/CAPTURE_TOOL_MISSING.*iptables-restore, iptables-save, ipset/s);
      expect(await nodeRules("node-a")).toEqual({ jumps: 0, rules: 0, ipRules: 0, sets: [] });
      await expect(c.startAgent("node-a", { ZT_SOCKOPT_ADDON: path.join(bin, "missing.node") })).rejects.toThrow(/CAPTURE_UNAVAILABLE.*socket-option addon did not load/s);
      expect(await nodeRules("node-a")).toEqual({ jumps: 0, rules: 0, ipRules: 0, sets: [] });
      // Without capture the same host runs fine and says what it lacks.
      const plain = await c.startAgent("node-a", { ZT_SOCKOPT_ADDON: path.join(bin, "missing.node"), REDIRECT_MODE: "none" });
      expect(plain.logs.some((l) => String(l["msg"]).startsWith("transparent capture is unavailable on this host"))).toBe(true);
      expect(await nodeRules("node-a")).toEqual({ jumps: 0, rules: 0, ipRules: 0, sets: [] });
      await plain.stop();
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
    await c.startAgent("node-a");
    expect((await c.flow("sleep-a", ip("echo-b"), 8080)).ok).toBe(true);
  }, 60_000);
});
