import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startAgentProcess, type AgentProcess, type FlowResult } from "@zt/harness";
import { createLab, listNamespaces, startEchoServer, type EchoServer, type Lab } from "@zt/lab";
import { until } from "./support/metrics.js";

// Two emulated nodes in network namespaces (needs root: fails, never skips, without it).
// Agents use the contract's default ports, HBONE inbound on the wildcard 0.0.0.0:15008.
const TOOL = fileURLToPath(new URL("../packages/harness/dist/tool-cli.js", import.meta.url));
const VIP = "198.18.128.20";
let lab: Lab;
let dir: string;
const agents: AgentProcess[] = [];
const echoes = new Map<string, EchoServer>();

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("netns tests need root (CI runs as root): run `sudo npm test`");
  dir = mkdtempSync(path.join(tmpdir(), "zt-netns-"));
  lab = await createLab({
    podMode: "host-ips",
    nodes: [
      { name: "node-a", pods: [{ name: "sleep", ip: "198.19.1.10" }, { name: "local-echo", ip: "198.19.1.11" }] },
      { name: "node-b", pods: [{ name: "echo", ip: "198.19.2.10" }, { name: "legacy", ip: "198.19.2.11" }] },
    ],
  });
  const file = path.join(dir, "workloads.yaml");
  writeFileSync(
    file,
    `workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["198.19.1.10"], protocol: HBONE, node: node-a}
- {name: local-echo, namespace: default, serviceAccount: echo, workloadIps: ["198.19.1.11"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["198.19.2.10"], protocol: HBONE, node: node-b, services: {"default/echo.default.svc.cluster.local": {80: 8080}}}
- {name: legacy, namespace: legacy, workloadIps: ["198.19.2.11"], protocol: TCP, node: node-b}
services:
- {name: echo, namespace: default, vips: ["/${VIP}"], ports: {80: 8080}}
`,
  );
  for (const n of lab.nodes) {
    const httpGet = async (addr: string, p: string): Promise<{ status: number; body: string }> =>
      JSON.parse((await lab.exec(n.ns, [process.execPath, TOOL, "get", addr, p])).stdout) as { status: number; body: string };
    const env = { LOCAL_XDS_PATH: file, CA_CERTS_DIR: path.join(dir, "cacerts"), ADMIN_ADDR: "127.0.0.1:15000", STATS_ADDR: "127.0.0.1:15020", READINESS_ADDR: "127.0.0.1:15021" };
    agents.push(await startAgentProcess(n.name, env, { prefix: ["ip", "netns", "exec", n.ns], httpGet }));
  }
  for (const p of ["local-echo", "echo", "legacy"]) echoes.set(p, await startEchoServer(lab, lab.pod(p).ns, lab.pod(p).ip, 8080));
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await lab?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (lab) expect((await listNamespaces()).filter((ns) => ns.startsWith(lab.prefix))).toEqual([]);
});

async function flow(host: string, port: number): Promise<FlowResult> {
  const from = lab.pod("sleep");
  const { stdout } = await lab.exec(from.ns, [process.execPath, TOOL, "flow", "127.0.0.1", "15080", from.ip, host, String(port), "200000"], { timeoutMs: 20_000 });
  return JSON.parse(stdout) as FlowResult;
}

function seenBy(agent: AgentProcess, srcAddr: string): Record<string, unknown> | undefined {
  return agent.accessLogs().find((l) => l["direction"] === "inbound" && l["src.addr"] === srcAddr);
}

describe("mesh across network namespaces", () => {
  test("pod → service VIP on another node: HBONE, bytes intact, identity seen", async () => {
    const r = await flow(VIP, 80);
    expect(r).toMatchObject({ ok: true, bytes: 200_000 });
    const seen = await until("inbound log on node-b", () => seenBy(agents[1]!, r.srcAddr), (l) => l !== undefined);
    expect(seen).toMatchObject({ "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", "dst.workload": "echo", "dst.addr": "198.19.2.10:8080" });
    expect(echoes.get("echo")!.connections.some((c) => c.bytes === 200_000)).toBe(true);
  });

  test("pod → pod on another node through the wildcard inbound listener", async () => {
    const r = await flow("198.19.2.10", 8080);
    expect(r.ok).toBe(true);
    expect(await until("inbound log", () => seenBy(agents[1]!, r.srcAddr), (l) => l !== undefined)).toBeDefined();
  });

  test("pod → pod on the same node, with the same checks", async () => {
    const r = await flow("198.19.1.11", 8080);
    expect(r.ok).toBe(true);
    const seen = await until("inbound log on node-a", () => seenBy(agents[0]!, r.srcAddr), (l) => l !== undefined);
    expect(seen["src.identity"]).toBe("spiffe://cluster.local/ns/default/sa/sleep");
  });

  test("mesh pod → pod outside the mesh: plain TCP", async () => {
    const r = await flow("198.19.2.11", 8080);
    expect(r.ok).toBe(true);
    expect(agents[1]!.accessLogs().some((l) => l["src.addr"] === r.srcAddr)).toBe(false);
  });
});
