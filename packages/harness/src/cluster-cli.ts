#!/usr/bin/env node
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startCluster, type ClusterPodSpec } from "./cluster.js";

const USAGE = `usage: zt-cluster up [--nodes N] [--pods M] [--plain K] [--logs DIR] [--discovery file|kubernetes|controller]
  Build N emulated nodes (network namespaces shaped like kind nodes), each with M pods in the
  mesh and K pods outside it, an echo server on :8080 in every pod, a service "echo" at
  198.18.128.10:80, and one agent per node with REDIRECT_MODE=tproxy. Prints the topology,
  keeps it until SIGINT/SIGTERM, then stops the agents (they remove their rules) and deletes
  every namespace. Each agent's log goes to DIR/<node>.log (default: a new zt-cluster-logs-*
  directory under the temp dir), which is kept after the teardown. --discovery kubernetes: the
  pods, the service and its EndpointSlice are objects in a FAKE API server that the agents follow
  (DISCOVERY=kubernetes) instead of a workload file. --discovery controller: the same objects,
  followed by zt-controller on the first node; the agents take the mesh over delta xDS and their
  certificates from its CA (no CA key and no kubeconfig on the nodes). Needs root.
`;

function count(v: string | undefined, fallback: number, name: string, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > 50) throw new Error(`--${name} wants an integer between ${min} and 50, got ${v}`);
  return n;
}

async function up(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { nodes: { type: "string" }, pods: { type: "string" }, plain: { type: "string" }, logs: { type: "string" }, discovery: { type: "string" } } });
  const discovery = values.discovery ?? "file";
  if (discovery !== "file" && discovery !== "kubernetes" && discovery !== "controller") throw new Error(`--discovery wants file, kubernetes or controller, got ${discovery}`);
  if (process.getuid?.() !== 0) throw new Error("zt-cluster needs root (network namespaces, iptables)");
  const nodes = count(values.nodes, 2, "nodes", 1);
  const pods = count(values.pods, 2, "pods", 1);
  const plain = count(values.plain, 1, "plain", 0);
  let stopping = false;
  const stop = new Promise<void>((resolve) => {
    // Persistent handlers: the agents' harness then leaves the exit to this teardown.
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => ((stopping = true), resolve()));
  });
  const spec = Array.from({ length: nodes }, (_, i) => ({
    name: `node-${i + 1}`,
    pods: [
      ...Array.from({ length: pods }, (_, j): ClusterPodSpec => ({ name: `pod-${i + 1}-${j + 1}`, serviceAccount: `sa-${j + 1}` })),
      ...Array.from({ length: plain }, (_, j): ClusterPodSpec => ({ name: `plain-${i + 1}-${j + 1}`, enrolled: false, namespace: "legacy" })),
    ],
  }));
  const meshPods = spec.flatMap((n) => n.pods.filter((p) => p.enrolled !== false).map((p) => p.name));
  const logDir = values.logs !== undefined ? path.resolve(values.logs) : mkdtempSync(path.join(tmpdir(), "zt-cluster-logs-"));
  mkdirSync(logDir, { recursive: true });
  process.stdout.write(`agent logs: ${logDir}/<node>.log\n`);
  const c = await startCluster({ nodes: spec, services: [{ name: "echo", vip: "198.18.128.10", port: 80, targetPort: 8080, pods: meshPods }], logDir, discovery });
  const source = c.controller
    ? `zt-controller at ${c.controller.address} (its status: ip netns exec ${c.lab.nodes[0]!.ns} curl -s 127.0.0.1:15014/debug/status), following a FAKE Kubernetes API server`
    : c.kube
    ? `a FAKE Kubernetes API server the agents follow: ip netns exec ${c.lab.nodes[0]!.ns} kubectl --kubeconfig ${c.kube.env["KUBECONFIG"]} get pods -A`
    : `workload file ${c.workloadsFile}`;
  const out: string[] = [`cluster ${c.lab.prefix} is up (${source})`, ""];
  for (const n of c.lab.nodes) {
    out.push(`${n.name}  netns ${n.ns}  uplink ${n.uplinkIp}  pods ${n.podCidr}  agent pid ${c.agent(n.name).proc.pid ?? "?"}  log ${path.join(logDir, `${n.name}.log`)}`);
    for (const p of c.pods.filter((x) => x.node === n.name)) out.push(`  ${p.name.padEnd(12)} ${p.ip.padEnd(14)} netns ${p.ns.padEnd(16)} ${p.enrolled ? p.identity : "outside the mesh"}`);
  }
  const first = c.pods[0]!;
  const other = c.pods.find((p) => p.node !== first.node) ?? c.pods[1] ?? first;
  out.push(
    "",
    "try:",
    `  ip netns exec ${first.ns} bash        # a shell inside pod ${first.name}; any TCP client works, e.g.`,
    `  ip netns exec ${first.ns} bash -c 'exec 3<>/dev/tcp/${other.ip}/8080; echo hello >&3; head -c 6 <&3'`,
    `  ip netns exec ${c.lab.node(first.node).ns} curl -s 127.0.0.1:15000/config_dump   # the agent of ${first.node}`,
    `  ip netns exec ${c.lab.node(first.node).ns} iptables-save -t mangle              # its capture rules`,
    "",
    "SIGINT/SIGTERM (Ctrl-C) tears everything down.",
  );
  process.stdout.write(`${out.join("\n")}\n`);
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const died = Promise.race([...c.agents.values()].map((a) => a.exited.then((code) => (stopping ? undefined : code))));
  await Promise.race([stop, died.then((code) => void (code !== undefined && process.stderr.write(`zt-cluster: an agent exited (code ${String(code)}); tearing down\n`)))]);
  clearInterval(keepAlive);
  await c.stop();
  process.stderr.write(`zt-cluster: ${c.lab.prefix} torn down; agent logs kept in ${logDir}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "up") {
    await up(rest);
    return 0;
  }
  process.stderr.write(USAGE);
  return cmd === "help" || cmd === "--help" || cmd === "-h" ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`zt-cluster: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
