/** Everything the node rules depend on. Defaults: {@link defaultCaptureParams}. */
export interface CaptureParams {
  /** Ports the TPROXY targets deliver to (the agent's transparent listeners). */
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly plaintextPort: number;
  /** Address given to TPROXY --on-ip; the listeners are bound to it or to the wildcard. */
  readonly onIp: string;
  /** ipset (hash:ip) of this node's enrolled pod IPs. */
  readonly ipset: string;
  /** Prefix of the iptables chains this package owns. */
  readonly chainPrefix: string;
  /** fwmark of captured packets and of packets of the agent's transparent sockets. */
  readonly captureMark: number;
  /** SO_MARK on every socket the agent opens. */
  readonly agentMark: number;
  readonly markMask: number;
  /** Policy-routing table delivering captured packets locally, and the rule's priority. */
  readonly routeTable: number;
  readonly rulePriority: number;
  /** Seconds iptables may wait for the xtables lock. */
  readonly lockWaitSeconds: number;
}

export const defaultCaptureParams: CaptureParams = {
  outboundPort: 15001,
  inboundPort: 15008,
  plaintextPort: 15006,
  onIp: "127.0.0.1",
  ipset: "ztunnel-pods-ips",
  chainPrefix: "ZTUNNEL",
  captureMark: 0x111,
  agentMark: 0x539,
  markMask: 0xfff,
  routeTable: 133,
  rulePriority: 100,
  lockWaitSeconds: 5,
};

export interface Chains {
  readonly prerouting: string;
  readonly divert: string;
  readonly output: string;
  readonly natPrerouting: string;
}

export function chainsOf(p: CaptureParams): Chains {
  return {
    prerouting: `${p.chainPrefix}-PRERT`,
    divert: `${p.chainPrefix}-DIVERT`,
    output: `${p.chainPrefix}-OUTPUT`,
    natPrerouting: `${p.chainPrefix}-NAT-PRERT`,
  };
}

/** Jumps from the built-in chains into ours, as iptables-save prints them (after `-A `). */
export function jumpsOf(p: CaptureParams): { table: "mangle" | "nat"; chain: string; spec: string }[] {
  const c = chainsOf(p);
  const jump = (to: string): string => `-m comment --comment ztunnel -j ${to}`;
  return [
    { table: "mangle", chain: "PREROUTING", spec: jump(c.prerouting) },
    { table: "mangle", chain: "OUTPUT", spec: jump(c.output) },
    { table: "nat", chain: "PREROUTING", spec: jump(c.natPrerouting) },
  ];
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * The iptables-restore input (one block per table) that (re)creates our chains with
 * exactly these rules. Chain declarations flush existing chains, so applying it twice
 * is the same as applying it once. Jumps are handled separately ({@link jumpsOf}).
 */
export function ruleTables(p: CaptureParams): { mangle: string[]; nat: string[] } {
  const c = chainsOf(p);
  const mark = `${hex(p.captureMark)}/${hex(p.markMask)}`;
  const agent = `${hex(p.agentMark)}/${hex(p.markMask)}`;
  const set = (dir: "src" | "dst"): string => `-m set --match-set ${p.ipset} ${dir}`;
  const tproxy = (port: number): string => `-j TPROXY --on-port ${port} --on-ip ${p.onIp} --tproxy-mark ${mark}`;
  const comment = (text: string): string => `-m comment --comment "${text}"`;
  const mangle = [
    `:${c.prerouting} - [0:0]`,
    `:${c.divert} - [0:0]`,
    `:${c.output} - [0:0]`,
    // 1. Packets of connections the agent already holds: accepted through TPROXY, or opened
    //    with a pod's address as source (the replies come back here). Checked first.
    `-A ${c.prerouting} -p tcp -m socket --transparent ${comment("established transparent socket")} -j ${c.divert}`,
    // 2. The agent own traffic looping through lo is never captured again.
    `-A ${c.prerouting} -i lo -m mark --mark ${agent} ${comment("agent own traffic")} -j RETURN`,
    // 3. HBONE to a local pod (from another node, or rerouted from this agent via lo).
    `-A ${c.prerouting} -p tcp ${set("dst")} --dport ${p.inboundPort} ${comment("HBONE to a local pod")} ${tproxy(p.inboundPort)}`,
    `-A ${c.prerouting} -i lo -j RETURN`,
    // 4. Outbound: TCP from a local enrolled pod to anything but this node's own addresses.
    `-A ${c.prerouting} -p tcp ${set("src")} -m addrtype ! --dst-type LOCAL ${comment("from a local pod: outbound")} ${tproxy(p.outboundPort)}`,
    // 5. Plaintext inbound: other TCP to a local enrolled pod (the client is outside the mesh).
    `-A ${c.prerouting} -p tcp ${set("dst")} ${comment("to a local pod from outside the mesh")} ${tproxy(p.plaintextPort)}`,
    `-A ${c.divert} -j MARK --set-xmark ${mark}`,
    `-A ${c.divert} -j ACCEPT`,
    // Same-node HBONE: the agent's connection to a local pod's 15008 is routed through lo,
    // so that it enters PREROUTING and rule 3 hands it to the agent's own inbound listener.
    `-A ${c.output} -p tcp -m mark --mark ${agent} ${set("dst")} --dport ${p.inboundPort} ${comment("same-node HBONE via lo")} -j MARK --set-xmark ${mark}`,
  ];
  const nat = [
    `:${c.natPrerouting} - [0:0]`,
    // Captured packets keep their original destination: kube-proxy's service DNAT must not run.
    `-A ${c.natPrerouting} -m mark --mark ${mark} ${comment("captured: skip service DNAT")} -j ACCEPT`,
  ];
  return { mangle, nat };
}
