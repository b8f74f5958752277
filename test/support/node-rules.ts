import type { Cluster } from "@zt/harness";

export interface NodeRules {
  /** Jumps from built-in chains into ours. */
  jumps: number;
  /** Rules inside our chains. */
  rules: number;
  /** Policy-routing rules into table 133. */
  ipRules: number;
  sets: string[];
}

export const NO_RULES: NodeRules = { jumps: 0, rules: 0, ipRules: 0, sets: [] };

/** What capture has installed in a node's namespace right now (iptables-save, ip rule, ipset). */
export async function nodeRules(c: Cluster, node: string): Promise<NodeRules> {
  const ns = c.lab.node(node).ns;
  const save = (await c.lab.exec(ns, ["iptables-save"])).stdout;
  const ipRules = (await c.lab.exec(ns, ["ip", "rule", "show"])).stdout;
  const sets = (await c.lab.exec(ns, ["ipset", "list", "-n"])).stdout.split("\n").filter((s) => s !== "");
  return {
    jumps: save.split("\n").filter((l) => /^-A (PREROUTING|OUTPUT) .*-j ZTUNNEL-/.test(l)).length,
    rules: save.split("\n").filter((l) => l.startsWith("-A ZTUNNEL-")).length,
    ipRules: ipRules.split("\n").filter((l) => l.includes("lookup 133")).length,
    sets,
  };
}
