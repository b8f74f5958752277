import type { ServiceSpec } from "./plan.js";

/**
 * kube-proxy-like DNAT rules for one node namespace, as iptables argv lists (run via `ip netns exec`).
 * One chain (`chain`) hooked from nat PREROUTING (traffic from pods) and nat OUTPUT (traffic from the
 * node namespace itself); endpoint k of n is picked with probability 1/(n-k), the last one unconditionally.
 */
export function serviceRules(chain: string, services: readonly ServiceSpec[]): string[][] {
  const ipt = (...args: string[]): string[] => ["iptables", "-w", "-t", "nat", ...args];
  const rules: string[][] = [ipt("-N", chain), ipt("-A", "PREROUTING", "-j", chain), ipt("-A", "OUTPUT", "-j", chain)];
  for (const svc of services) {
    const n = svc.endpoints.length;
    svc.endpoints.forEach((ep, k) => {
      const match = ["-d", `${svc.vip}/32`, "-p", "tcp", "--dport", String(svc.port)];
      const pick = k < n - 1 ? ["-m", "statistic", "--mode", "random", "--probability", (1 / (n - k)).toFixed(5)] : [];
      const comment = ["-m", "comment", "--comment", `${svc.vip}:${String(svc.port)} endpoint ${String(k)}`];
      rules.push(ipt("-A", chain, ...match, ...comment, ...pick, "-j", "DNAT", "--to-destination", `${ep.ip}:${String(ep.port)}`));
    });
  }
  return rules;
}
