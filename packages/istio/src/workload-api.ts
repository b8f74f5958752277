/**
 * The mesh model of @zt/state as Istio's workload API, both ways: what the controller
 * sends and what the agent's xDS client applies. Reading refuses (with a reason naming
 * the field) what the agent cannot serve as written, so that the client can NACK that
 * resource and keep the rest.
 */
import { ZtError } from "@zt/errors";
import { formatCidr, parseCidr, type Policy, type PolicyMatch, type PortMap, type Service, type Workload } from "@zt/state";
import { bytesToIp, ipToBytes } from "./ip-bytes.js";
import type { WireAuthorization, WireCidr, WireMatch, WirePort, WireService, WireStringMatch, WireWorkload, WorkloadType } from "./messages.js";

/** What a resource leaves unsaid (Istio leaves the trust domain and cluster out when they are the defaults). */
export interface WireDefaults {
  readonly trustDomain: string;
  readonly clusterId: string;
}

const TYPES: Record<string, WorkloadType> = { deployment: "DEPLOYMENT", cronjob: "CRONJOB", pod: "POD", job: "JOB" };

const ports = (m: PortMap): WirePort[] => [...m].map(([service_port, target_port]) => ({ service_port, target_port }));

export function workloadToWire(w: Workload): WireWorkload {
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses: w.workloadIps.map(ipToBytes),
    tunnel_protocol: w.protocol === "HBONE" ? "HBONE" : "NONE",
    trust_domain: w.trustDomain,
    service_account: w.serviceAccount,
    node: w.node,
    canonical_name: w.canonicalName,
    canonical_revision: w.canonicalRevision,
    // Istio's enum has four kinds; the others (statefulset, daemonset...) travel as DEPLOYMENT, as istiod sends them.
    workload_type: TYPES[w.workloadType] ?? "DEPLOYMENT",
    workload_name: w.workloadName,
    services: Object.fromEntries([...w.services].map(([k, m]) => [k, { ports: ports(m) }])),
    authorization_policies: [...(w.authorizationPolicies ?? [])],
    status: w.status === "Healthy" ? "HEALTHY" : "UNHEALTHY",
    cluster_id: w.clusterId,
    ...(w.capacity !== 1 ? { capacity: { value: w.capacity } } : {}),
  };
}

export function serviceToWire(s: Service): WireService {
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses: s.vips.map((v) => ({ network: v.network, address: ipToBytes(v.address) })),
    ports: ports(s.ports),
    subject_alt_names: [...s.subjectAltNames],
  };
}

function invalid(what: string, reason: string): never {
  throw new ZtError("XDS_RESOURCE_INVALID", `${what}: ${reason}`);
}

function ip(b: Uint8Array, what: string): string {
  return bytesToIp(b) ?? invalid(what, `an address of ${b.length} bytes (4 or 16 expected)`);
}

function portMap(list: readonly WirePort[], what: string): PortMap {
  const m = new Map<number, number>();
  for (const p of list) {
    if (p.service_port < 1 || p.service_port > 65535 || p.target_port > 65535) invalid(what, `port ${p.service_port} -> ${p.target_port} is out of range`);
    if (m.has(p.service_port)) invalid(what, `service port ${p.service_port} is listed twice`);
    // Istio: target_port 0 means "the same as the service port" for services, and "unknown" for a workload's override.
    m.set(p.service_port, p.target_port === 0 ? p.service_port : p.target_port);
  }
  return m;
}

const present = (v: unknown): boolean => v !== undefined && v !== null;

export function workloadFromWire(w: WireWorkload, d: WireDefaults): Workload {
  const what = `workload ${w.uid || "(no uid)"}`;
  if (!w.uid) invalid(what, "it has no uid");
  if (!w.name || !w.namespace) invalid(what, "it has no name or namespace");
  if (w.addresses.length === 0) invalid(what, "it has no address (workloads reached by hostname only are not supported)");
  if (present(w.waypoint)) invalid(what, "it has a waypoint; this agent does not route through waypoints, and sending its traffic around one would skip its policies");
  if (present(w.network_gateway)) invalid(what, "it has a network gateway; multi-network meshes are not supported");
  if (w.tunnel_protocol === "LEGACY_ISTIO_MTLS") invalid(what, "tunnel protocol LEGACY_ISTIO_MTLS (sidecars' mTLS) is not supported");
  const services = new Map<string, PortMap>();
  for (const [key, list] of Object.entries(w.services)) {
    if (!/^[^/]+\/[^/]+$/.test(key)) invalid(what, `service key ${JSON.stringify(key)} is not <namespace>/<hostname>`);
    services.set(key, portMap(list.ports, `${what}, service ${key}`));
  }
  const capacity = w.capacity?.value ?? 1;
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    serviceAccount: w.service_account || "default",
    workloadIps: w.addresses.map((a) => ip(a, what)),
    protocol: w.tunnel_protocol === "HBONE" ? "HBONE" : "TCP",
    node: w.node,
    trustDomain: w.trust_domain || d.trustDomain,
    clusterId: w.cluster_id || d.clusterId,
    canonicalName: w.canonical_name || w.name,
    canonicalRevision: w.canonical_revision || "latest",
    workloadType: w.workload_type.toLowerCase(),
    workloadName: w.workload_name || w.name,
    status: w.status === "UNHEALTHY" ? "Unhealthy" : "Healthy",
    // The workload API carries no labels; `app` (the metric label) is the canonical name, as Istio's ztunnel reports it.
    labels: new Map([["app", w.canonical_name || w.name]]),
    capacity: capacity < 1 ? 1 : capacity,
    services,
    ...(w.authorization_policies.length > 0 ? { authorizationPolicies: [...w.authorization_policies] } : {}),
  };
}

export function serviceFromWire(s: WireService): Service {
  const what = `service ${s.namespace}/${s.hostname}`;
  if (!s.hostname || !s.namespace) invalid(what, "it has no hostname or namespace");
  if (present(s.waypoint)) invalid(what, "it has a waypoint; this agent does not route through waypoints");
  return {
    name: s.name || s.hostname.split(".")[0]!,
    namespace: s.namespace,
    hostname: s.hostname,
    vips: s.addresses.map((a) => ({ network: a.network, address: ip(a.address, what) })),
    ports: portMap(s.ports, what),
    subjectAltNames: [...s.subject_alt_names],
  };
}

// ---- authorization ----

function stringToWire(p: string): WireStringMatch {
  if (p === "*") return { presence: {} };
  if (p.endsWith("*")) return { prefix: p.slice(0, -1) };
  if (p.startsWith("*")) return { suffix: p.slice(1) };
  return { exact: p };
}

function stringFromWire(m: WireStringMatch, what: string): string {
  if (present(m.presence)) return "*";
  if (m.exact !== undefined && m.exact !== "") return m.exact;
  if (m.prefix !== undefined && m.prefix !== "") return `${m.prefix}*`;
  if (m.suffix !== undefined && m.suffix !== "") return `*${m.suffix}`;
  return invalid(what, "a string match with no value");
}

function cidrToWire(s: string): WireCidr {
  const c = parseCidr(s);
  if (!c) throw new ZtError("XDS_RESOURCE_INVALID", `${JSON.stringify(s)} is not an IP or CIDR`);
  return { address: ipToBytes(c.ip), length: c.prefix };
}

function cidrFromWire(c: WireCidr, what: string): string {
  const addr = ip(c.address, what);
  const max = c.address.length * 8;
  if (c.length > max) invalid(what, `prefix length ${c.length} for a ${max}-bit address`);
  return formatCidr(parseCidr(`${addr}/${c.length}`)!);
}

const saToWire = (s: string): { namespace: string; serviceAccount: string } => {
  const slash = s.indexOf("/");
  return slash < 0 ? { namespace: "", serviceAccount: s } : { namespace: s.slice(0, slash), serviceAccount: s.slice(slash + 1) };
};

function matchToWire(m: PolicyMatch): WireMatch {
  const out: Record<string, unknown> = {};
  const strings = (k: keyof PolicyMatch, wire: string): void => void (m[k] && (out[wire] = (m[k] as string[]).map(stringToWire)));
  const cidrs = (k: keyof PolicyMatch, wire: string): void => void (m[k] && (out[wire] = (m[k] as string[]).map(cidrToWire)));
  strings("namespaces", "namespaces");
  strings("notNamespaces", "not_namespaces");
  strings("principals", "principals");
  strings("notPrincipals", "not_principals");
  cidrs("sourceIps", "source_ips");
  cidrs("notSourceIps", "not_source_ips");
  cidrs("destinationIps", "destination_ips");
  cidrs("notDestinationIps", "not_destination_ips");
  if (m.destinationPorts) out.destination_ports = [...m.destinationPorts];
  if (m.notDestinationPorts) out.not_destination_ports = [...m.notDestinationPorts];
  if (m.serviceAccounts) out.service_accounts = m.serviceAccounts.map(saToWire);
  if (m.notServiceAccounts) out.not_service_accounts = m.notServiceAccounts.map(saToWire);
  return out as WireMatch;
}

function matchFromWire(m: WireMatch, what: string): PolicyMatch {
  const out: Record<string, unknown> = {};
  const strings = (wire: keyof WireMatch, k: keyof PolicyMatch): void => {
    const l = m[wire] as readonly WireStringMatch[] | undefined;
    if (l && l.length > 0) out[k] = l.map((e) => stringFromWire(e, what));
  };
  const cidrs = (wire: keyof WireMatch, k: keyof PolicyMatch): void => {
    const l = m[wire] as readonly WireCidr[] | undefined;
    if (l && l.length > 0) out[k] = l.map((e) => cidrFromWire(e, what));
  };
  strings("namespaces", "namespaces");
  strings("not_namespaces", "notNamespaces");
  strings("principals", "principals");
  strings("not_principals", "notPrincipals");
  cidrs("source_ips", "sourceIps");
  cidrs("not_source_ips", "notSourceIps");
  cidrs("destination_ips", "destinationIps");
  cidrs("not_destination_ips", "notDestinationIps");
  const portList = (l: readonly number[] | undefined, k: keyof PolicyMatch): void => {
    if (!l || l.length === 0) return;
    for (const p of l) if (p < 1 || p > 65535) invalid(what, `port ${p} is out of range`);
    out[k] = [...l];
  };
  portList(m.destination_ports, "destinationPorts");
  portList(m.not_destination_ports, "notDestinationPorts");
  const sas = (l: WireMatch["service_accounts"], k: keyof PolicyMatch): void => {
    if (l && l.length > 0) out[k] = l.map((s) => (s.namespace ? `${s.namespace}/${s.serviceAccount}` : s.serviceAccount));
  };
  sas(m.service_accounts, "serviceAccounts");
  sas(m.not_service_accounts, "notServiceAccounts");
  return out as PolicyMatch;
}

const SCOPES = { Global: "GLOBAL", Namespace: "NAMESPACE", WorkloadSelector: "WORKLOAD_SELECTOR" } as const;

/** A policy with a selector travels as WORKLOAD_SELECTOR: the workloads it selects name it (`workloadToWire` of workloads whose `authorizationPolicies` say so). */
export function policyToWire(p: Policy): WireAuthorization {
  return {
    name: p.name,
    namespace: p.namespace,
    scope: p.selector.size > 0 ? "WORKLOAD_SELECTOR" : SCOPES[p.scope],
    action: p.action === "Deny" ? "DENY" : "ALLOW",
    groups: p.rules.map((rule) => ({ rules: rule.map((clause) => ({ matches: clause.map(matchToWire) })) })),
    dry_run: p.dryRun,
  };
}

export function policyFromWire(a: WireAuthorization): Policy {
  const what = `authorization ${a.namespace}/${a.name}`;
  if (!a.name || !a.namespace) invalid(what, "it has no name or namespace");
  const scope = a.scope === "GLOBAL" ? "Global" : a.scope === "NAMESPACE" ? "Namespace" : a.scope === "WORKLOAD_SELECTOR" ? "WorkloadSelector" : invalid(what, `unknown scope ${String(a.scope)}`);
  if (a.action !== "ALLOW" && a.action !== "DENY") invalid(what, `unknown action ${String(a.action)} (ztunnel enforces ALLOW and DENY)`);
  return {
    name: a.name,
    namespace: a.namespace,
    scope,
    action: a.action === "DENY" ? "Deny" : "Allow",
    dryRun: a.dry_run,
    selector: new Map(),
    ...(scope === "WorkloadSelector" ? { selectedByName: true } : {}),
    rules: a.groups.map((g) => g.rules.map((r) => r.matches.map((m) => matchFromWire(m, what)))),
  };
}
