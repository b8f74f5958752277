import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createLab, startEchoServer, type Lab } from "@zt/lab";
import { startAgentProcess, type AgentProcess } from "./agent-process.js";
import type { FlowResult } from "./flows.js";
import { printSummary, type SummaryRow } from "./summary.js";

const TOOL = fileURLToPath(new URL("./tool-cli.js", import.meta.url));
const VIP = "198.18.128.10";

/** The workload file for the lab: same shape as the embedded default, on the lab's addresses. */
function workloads(lab: Lab): string {
  const ip = (name: string): string => lab.pod(name).ip;
  return `workloads:
- {name: sleep-a, namespace: default, serviceAccount: sleep, workloadIps: ["${ip("sleep-a")}"], protocol: HBONE, node: node-a, canonicalName: sleep, canonicalRevision: v1}
- {name: echo-a, namespace: default, serviceAccount: echo, workloadIps: ["${ip("echo-a")}"], protocol: HBONE, node: node-a, services: {"default/echo.default.svc.cluster.local": {80: 8080}}}
- {name: echo-b, namespace: default, serviceAccount: echo, workloadIps: ["${ip("echo-b")}"], protocol: HBONE, node: node-b, services: {"default/echo.default.svc.cluster.local": {80: 8080}}}
- {name: legacy-b, namespace: legacy, workloadIps: ["${ip("legacy-b")}"], protocol: TCP, node: node-b}
services:
- {name: echo, namespace: default, vips: ["/${VIP}"], ports: {80: 8080}}
policies:
- {name: deny-9999, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [9999]}]]]}
`;
}

/**
 * Two emulated nodes (network namespaces shaped like kind nodes, pods' IPs as node
 * addresses since capture is not installed yet), one agent per node on the contract's
 * default ports, traffic from a pod on node-a through the agent's SOCKS5 listener.
 */
export async function runNetnsDemo(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-demo-"));
  const pods = (names: string[], i: number): { name: string; ip: string }[] => names.map((name, j) => ({ name, ip: `198.19.${i + 1}.${10 + j}` }));
  const lab = await createLab({
    podMode: "host-ips",
    nodes: [
      { name: "node-a", pods: pods(["sleep-a", "echo-a"], 0) },
      { name: "node-b", pods: pods(["echo-b", "legacy-b"], 1) },
    ],
    services: [{ vip: VIP, port: 80, endpoints: [{ ip: "198.19.1.11", port: 8080 }, { ip: "198.19.2.10", port: 8080 }] }],
  });
  const agents: AgentProcess[] = [];
  try {
    const file = path.join(dir, "workloads.yaml");
    writeFileSync(file, workloads(lab));
    process.stdout.write(`lab ${lab.prefix}: ${lab.nodes.map((n) => `${n.name} (${n.ns}, uplink ${n.uplinkIp})`).join(", ")}\n\n`);
    for (const n of lab.nodes) {
      const httpGet = async (addr: string, p: string): Promise<{ status: number; body: string }> =>
        JSON.parse((await lab.exec(n.ns, [process.execPath, TOOL, "get", addr, p])).stdout) as { status: number; body: string };
      const env = { LOCAL_XDS_PATH: file, CA_CERTS_DIR: path.join(dir, "cacerts"), REDIRECT_MODE: "none", ADMIN_ADDR: "127.0.0.1:15000", STATS_ADDR: "127.0.0.1:15020", READINESS_ADDR: "127.0.0.1:15021" };
      agents.push(await startAgentProcess(n.name, env, { prefix: ["ip", "netns", "exec", n.ns], httpGet }));
    }
    for (const p of ["echo-a", "echo-b", "legacy-b"]) await startEchoServer(lab, lab.pod(p).ns, lab.pod(p).ip, 8080);
    const from = lab.pod("sleep-a");
    const flow = async (host: string, port: number): Promise<FlowResult> =>
      JSON.parse((await lab.exec(from.ns, [process.execPath, TOOL, "flow", "127.0.0.1", "15080", from.ip, host, String(port)], { timeoutMs: 20_000 })).stdout) as FlowResult;
    const flows = [
      { what: `sleep-a -> echo service VIP ${VIP}:80`, host: VIP, port: 80, expect: true },
      { what: "sleep-a -> echo.default.svc.cluster.local:80", host: "echo.default.svc.cluster.local", port: 80, expect: true },
      { what: `sleep-a -> echo-b pod ${lab.pod("echo-b").ip}:8080 (other node)`, host: lab.pod("echo-b").ip, port: 8080, expect: true },
      { what: `sleep-a -> echo-a pod ${lab.pod("echo-a").ip}:8080 (same node)`, host: lab.pod("echo-a").ip, port: 8080, expect: true },
      { what: `sleep-a -> legacy-b ${lab.pod("legacy-b").ip}:8080 (not in mesh)`, host: lab.pod("legacy-b").ip, port: 8080, expect: true },
      { what: "sleep-a -> echo-b :9999 (policy deny-9999)", host: lab.pod("echo-b").ip, port: 9999, expect: false },
    ];
    const rows: SummaryRow[] = [];
    for (const f of flows) rows.push({ what: f.what, result: await flow(f.host, f.port), expectOk: f.expect });
    await new Promise((r) => setTimeout(r, 200));
    return printSummary(rows, agents, (a) => `inside netns ${lab.node(a.node).ns}`);
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
