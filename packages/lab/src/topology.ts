import { FABRIC_CIDR, POD_GATEWAY, SERVICE_CIDR, type LabPlan } from "./plan.js";
import { serviceRules } from "./services.js";

/** One command of the build; `createsNs` marks the `ip netns add` whose namespace teardown must delete. */
export interface Step {
  argv: string[];
  createsNs?: string;
}

const prefixLen = FABRIC_CIDR.split("/")[1] ?? "24";

/**
 * The ordered commands that build a planned lab. Pure. Interfaces are created inside lab namespaces
 * (`ip -n <ns> link add ... peer ... netns <other>`), so nothing ever appears in the host's namespace.
 */
export function topologySteps(plan: LabPlan): Step[] {
  const steps: Step[] = [];
  const ip = (ns: string, ...args: string[]): void => void steps.push({ argv: ["ip", "-n", ns, ...args] });
  const inNs = (ns: string, ...argv: string[]): void => void steps.push({ argv: ["ip", "netns", "exec", ns, ...argv] });
  const addNs = (ns: string): void => {
    steps.push({ argv: ["ip", "netns", "add", ns], createsNs: ns });
    ip(ns, "link", "set", "lo", "up");
  };

  const fab = plan.fabricNs;
  addNs(fab);
  ip(fab, "link", "add", plan.bridge, "type", "bridge");
  ip(fab, "link", "set", plan.bridge, "up");

  for (const n of plan.nodes) {
    addNs(n.ns);
    inNs(n.ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
    ip(fab, "link", "add", n.fabricIf, "type", "veth", "peer", "name", n.uplinkIf, "netns", n.ns);
    ip(fab, "link", "set", n.fabricIf, "master", plan.bridge, "up");
    ip(n.ns, "addr", "add", `${n.uplinkIp}/${prefixLen}`, "dev", n.uplinkIf);
    ip(n.ns, "link", "set", n.uplinkIf, "up");
  }
  for (const n of plan.nodes) {
    for (const other of plan.nodes) {
      if (other !== n) ip(n.ns, "route", "add", other.podCidr, "via", other.uplinkIp, "dev", n.uplinkIf);
    }
    // Like a kind node's default route, but only for the service range: lets the node namespace's own
    // connections to a VIP pass the route lookup so nat OUTPUT can DNAT them. Unmatched VIPs die on the bridge.
    ip(n.ns, "route", "add", SERVICE_CIDR, "dev", n.uplinkIf);
  }

  for (const p of plan.pods) {
    const node = plan.nodes[p.nodeIndex];
    if (node === undefined) throw new Error(`pod ${p.name}: no node ${String(p.nodeIndex)}`);
    if (p.hostIf === undefined || p.podIf === undefined) {
      ip(node.ns, "addr", "add", `${p.ip}/32`, "dev", "lo");
      continue;
    }
    addNs(p.ns);
    ip(node.ns, "link", "add", p.hostIf, "type", "veth", "peer", "name", p.podIf, "netns", p.ns);
    inNs(node.ns, "sysctl", "-q", "-w", `net.ipv4.conf.${p.hostIf}.proxy_arp=1`);
    ip(node.ns, "link", "set", p.hostIf, "up");
    ip(node.ns, "route", "add", `${p.ip}/32`, "dev", p.hostIf, "src", node.uplinkIp);
    ip(p.ns, "addr", "add", `${p.ip}/32`, "dev", p.podIf);
    ip(p.ns, "link", "set", p.podIf, "up");
    ip(p.ns, "route", "add", POD_GATEWAY, "dev", p.podIf, "scope", "link");
    ip(p.ns, "route", "add", "default", "via", POD_GATEWAY, "dev", p.podIf, "onlink");
  }
  if (plan.mode === "pod-ns") {
    // The pods' gateway: a local address the node answers ARP for on every pod veth (kind ptp / Calico style).
    for (const n of plan.nodes) ip(n.ns, "addr", "add", `${POD_GATEWAY}/32`, "dev", "lo", "scope", "link");
  }

  if (plan.services.length > 0) {
    for (const n of plan.nodes) for (const argv of serviceRules(plan.chain, plan.services)) inNs(n.ns, ...argv);
  }
  return steps;
}
