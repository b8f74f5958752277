import { startCluster, type Cluster } from "./cluster.js";
import { explainFlow, printSummary, type SummaryRow } from "./summary.js";

const VIP = "198.18.128.10";

/**
 * Two emulated nodes shaped like kind nodes (pods in their own network namespaces behind
 * veths), one agent per node with REDIRECT_MODE=tproxy: pods open plain TCP connections
 * to ordinary addresses, and the node rules bring them to the agents.
 */
export async function runNetnsDemo(): Promise<number> {
  const t0 = Date.now();
  const c: Cluster = await startCluster({
    nodes: [
      { name: "node-a", pods: [{ name: "sleep-a", serviceAccount: "sleep" }, { name: "echo-a", serviceAccount: "echo" }] },
      { name: "node-b", pods: [{ name: "echo-b", serviceAccount: "echo" }, { name: "legacy-b", enrolled: false, namespace: "legacy" }] },
    ],
    services: [{ name: "echo", vip: VIP, port: 80, targetPort: 8080, pods: ["echo-a", "echo-b"] }],
    policies: ["{name: deny-9999, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [9999]}]]]}"],
    echoPorts: [8080, 9999],
  });
  try {
    process.stdout.write(`cluster ${c.lab.prefix} up in ${Date.now() - t0} ms: ${c.lab.nodes.map((n) => `${n.name} (netns ${n.ns})`).join(", ")}\n`);
    for (const p of c.pods) process.stdout.write(`  ${p.node}/${p.name} ${p.ip} ${p.enrolled ? `in the mesh as ${p.identity}` : "outside the mesh"} (netns ${p.ns})\n`);
    process.stdout.write(`every pod runs an echo server on :8080 and :9999; service echo = ${VIP}:80 -> echo-a, echo-b :8080\n\n`);
    const ip = (n: string): string => c.pod(n).ip;
    const flows: [what: string, from: string, host: string, port: number, expect: boolean][] = [
      [`sleep-a -> service VIP ${VIP}:80`, "sleep-a", VIP, 80, true],
      [`sleep-a -> echo-b ${ip("echo-b")}:8080 (other node)`, "sleep-a", ip("echo-b"), 8080, true],
      [`sleep-a -> echo-a ${ip("echo-a")}:8080 (same node)`, "sleep-a", ip("echo-a"), 8080, true],
      [`sleep-a -> legacy-b ${ip("legacy-b")}:8080 (outside the mesh: passthrough)`, "sleep-a", ip("legacy-b"), 8080, true],
      [`legacy-b -> echo-a ${ip("echo-a")}:8080 (from outside the mesh: inbound plaintext)`, "legacy-b", ip("echo-a"), 8080, true],
      [`sleep-a -> echo-b :9999 (denied by policy deny-9999)`, "sleep-a", ip("echo-b"), 9999, false],
    ];
    const rows: SummaryRow[] = [];
    for (const [what, from, host, port, expectOk] of flows) {
      const r = await c.flow(from, host, port);
      const explained = expectOk ? undefined : await explainFlow(c.agent(c.pod(from).node), ip(from), host, port);
      rows.push({ what, expectOk, result: { ok: r.ok, detail: r.detail, srcAddr: r.client, bytes: r.bytes }, seenByDestination: r.seenByDestination, explained });
    }
    await new Promise((r) => setTimeout(r, 200));
    return printSummary(rows, [...c.agents.values()], (a) => `inside netns ${c.lab.node(a.node).ns}`);
  } finally {
    await c.stop();
  }
}
