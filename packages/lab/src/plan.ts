import { inCidr, parseIpv4 } from "./ipv4.js";

/** Addressing plan: everything inside 198.18.0.0/15 (RFC 2544 benchmark range, never routed). */
export const FABRIC_CIDR = "198.18.0.0/24";
export const SERVICE_CIDR = "198.18.128.0/17";
export const POD_GATEWAY = "169.254.1.1";
export const nodeUplinkIp = (i: number): string => `198.18.0.${i + 1}`;
export const nodePodCidr = (i: number): string => `198.19.${i + 1}.0/24`;
export const defaultPodIp = (i: number, j: number): string => `198.19.${i + 1}.${j + 10}`;

export type PodMode = "host-ips" | "pod-ns";

export interface LabSpec {
  /** `zt-<this pid>` or `zt-<this pid>-<suffix>`; default `zt-<pid>` (or `zt-<pid>-<k>` when taken). */
  prefix?: string;
  nodes: { name: string; pods: { name: string; ip: string }[] }[];
  services?: ServiceSpec[];
  podMode: PodMode;
}

export interface ServiceSpec {
  vip: string;
  port: number;
  endpoints: { ip: string; port: number }[];
}

export interface PlannedNode {
  index: number;
  name: string;
  ns: string;
  uplinkIp: string;
  podCidr: string;
  /** Uplink veth end inside the node namespace. */
  uplinkIf: string;
  /** Uplink veth end inside the fabric namespace (enslaved to the bridge). */
  fabricIf: string;
}

export interface PlannedPod {
  name: string;
  node: string;
  nodeIndex: number;
  ip: string;
  /** The pod's own namespace (pod-ns), or its node's namespace (host-ips). */
  ns: string;
  /** pod-ns only: veth end in the node namespace, and the end inside the pod namespace. */
  hostIf?: string;
  podIf?: string;
}

export interface LabPlan {
  prefix: string;
  mode: PodMode;
  fabricNs: string;
  bridge: string;
  /** iptables nat chain holding the service DNAT rules in every node namespace. */
  chain: string;
  nodes: PlannedNode[];
  pods: PlannedPod[];
  services: ServiceSpec[];
}

const IFNAMSIZ = 15;
const CHAIN_MAX = 28;

/** A prefix the lab accepts: `zt-<pid>` optionally followed by `-<lowercase alnum>` segments. */
export function checkPrefix(prefix: string, pid: number = process.pid): void {
  const m = /^zt-(\d+)((?:-[a-z0-9]+)*)$/.exec(prefix);
  if (m === null || Number(m[1]) !== pid) {
    throw new Error(`lab prefix ${JSON.stringify(prefix)} must be zt-${String(pid)} or zt-${String(pid)}-<suffix> (lowercase alnum)`);
  }
}

/** Short token for interface names (<= 8 chars): the prefix without dashes, or a hash of it. */
export function shortToken(prefix: string): string {
  const plain = prefix.replace(/[^a-z0-9]/g, "");
  if (plain.length <= 8) return plain;
  let h = 0x811c9dc5;
  for (const c of prefix) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return `z${h.toString(36).padStart(7, "0").slice(-7)}`;
}

function ifName(name: string): string {
  if (name.length > IFNAMSIZ) throw new Error(`interface name ${name} is longer than ${String(IFNAMSIZ)} chars: too many nodes/pods`);
  return name;
}

/** Validate a spec and compute every name and address the lab will create. Pure: touches nothing. */
export function planLab(spec: LabSpec, prefix: string): LabPlan {
  checkPrefix(prefix);
  const s = shortToken(prefix);
  const chain = `${prefix.toUpperCase()}-SVC`;
  if (chain.length > CHAIN_MAX) throw new Error(`prefix ${prefix} is too long for the iptables chain name ${chain}`);
  if (spec.nodes.length < 1 || spec.nodes.length > 254) throw new Error("a lab needs between 1 and 254 nodes");
  const names = new Set<string>();
  const ips = new Set<string>();
  const unique = (set: Set<string>, v: string, what: string): void => {
    if (set.has(v)) throw new Error(`duplicate ${what} ${v}`);
    set.add(v);
  };
  const nodes: PlannedNode[] = [];
  const pods: PlannedPod[] = [];
  spec.nodes.forEach((n, i) => {
    if (n.name === "") throw new Error("node name must not be empty");
    unique(names, `node/${n.name}`, "node name");
    const ns = `${prefix}-n${String(i)}`;
    const podCidr = nodePodCidr(i);
    nodes.push({ index: i, name: n.name, ns, uplinkIp: nodeUplinkIp(i), podCidr, uplinkIf: ifName(`${s}u${String(i)}`), fabricIf: ifName(`${s}f${String(i)}`) });
    n.pods.forEach((p, j) => {
      if (p.name === "") throw new Error("pod name must not be empty");
      unique(names, `pod/${p.name}`, "pod name");
      const host = parseIpv4(p.ip) ?? -1;
      if (!inCidr(p.ip, podCidr) || host % 256 === 0 || host % 256 === 255) {
        throw new Error(`pod ${p.name} ip ${p.ip} must be a host address in node ${n.name}'s pod range ${podCidr}`);
      }
      unique(ips, p.ip, "pod ip");
      const pod: PlannedPod = { name: p.name, node: n.name, nodeIndex: i, ip: p.ip, ns };
      if (spec.podMode === "pod-ns") {
        pod.ns = `${ns}-p${String(j)}`;
        pod.hostIf = ifName(`${s}n${String(i)}p${String(j)}`);
        pod.podIf = ifName(`${s}e${String(i)}p${String(j)}`);
      }
      pods.push(pod);
    });
  });
  const services = spec.services ?? [];
  const inside = new Set([...ips, ...nodes.map((n) => n.uplinkIp)]);
  for (const svc of services) {
    if (!inCidr(svc.vip, SERVICE_CIDR)) throw new Error(`service vip ${svc.vip} must be inside ${SERVICE_CIDR}`);
    checkPort(svc.port, `service ${svc.vip}`);
    if (svc.endpoints.length === 0) throw new Error(`service ${svc.vip}:${String(svc.port)} has no endpoints`);
    for (const ep of svc.endpoints) {
      if (!inside.has(ep.ip)) throw new Error(`service endpoint ${ep.ip} is not a pod or node address of this lab`);
      checkPort(ep.port, `endpoint ${ep.ip}`);
    }
  }
  return { prefix, mode: spec.podMode, fabricNs: `${prefix}-fab`, bridge: ifName(`${s}br`), chain, nodes, pods, services };
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what}: bad port ${String(port)}`);
}

/** A regular spec: `nodes` nodes named node-1.., each with `pods` pods named pod-<node>-<pod>. */
export function simpleLabSpec(opts: { nodes: number; pods: number; podMode: PodMode; services?: ServiceSpec[]; prefix?: string }): LabSpec {
  const spec: LabSpec = {
    podMode: opts.podMode,
    nodes: Array.from({ length: opts.nodes }, (_, i) => ({
      name: `node-${String(i + 1)}`,
      pods: Array.from({ length: opts.pods }, (_, j) => ({ name: `pod-${String(i + 1)}-${String(j + 1)}`, ip: defaultPodIp(i, j) })),
    })),
  };
  if (opts.services !== undefined) spec.services = opts.services;
  if (opts.prefix !== undefined) spec.prefix = opts.prefix;
  return spec;
}
