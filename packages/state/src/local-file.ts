/**
 * The local config file (`LOCAL_XDS_PATH`): Istio ztunnel's local-config YAML shape
 * (camelCase) parsed into the mesh model. A file with problems is rejected as a whole
 * with one ConfigError listing every problem found.
 */
import { parseDocument } from "yaml";
import { EntryReader, isAbsent, isObj, keyPath, type Obj, ProblemList, readPortMap, typeName, unknownKeyReason } from "./config-reader.js";
import { ConfigError } from "./errors.js";
import { normalizeIp } from "./ip.js";
import { readPolicy } from "./local-file-policy.js";
import { type MeshSnapshot, type Policy, type PortMap, type Service, serviceKey, type Workload } from "./types.js";

export interface LocalConfigDefaults {
  readonly trustDomain: string;
  readonly clusterId: string;
}

const TOP_KEYS = ["workloads", "services", "policies"] as const;
const WORKLOAD_KEYS = [
  "uid", "name", "namespace", "serviceAccount", "workloadIps", "protocol", "node", "trustDomain", "clusterId",
  "canonicalName", "canonicalRevision", "workloadType", "workloadName", "status", "capacity", "labels", "services",
] as const;
const SERVICE_KEYS = ["name", "namespace", "hostname", "vips", "ports", "subjectAltNames"] as const;

function checkIp(s: string): { value: string } | { reason: string } {
  const ip = normalizeIp(s);
  return ip === undefined ? { reason: "not a valid IPv4 or IPv6 address" } : { value: ip };
}

/** A VIP as "network/ip", "/ip" or "ip". */
function parseVip(s: string): { network: string; address: string } | undefined {
  const slash = s.lastIndexOf("/");
  const address = normalizeIp(slash < 0 ? s : s.slice(slash + 1));
  return address === undefined ? undefined : { network: slash < 0 ? "" : s.slice(0, slash), address };
}

function readWorkload(p: ProblemList, entry: string, obj: Obj, d: LocalConfigDefaults): Workload {
  const r = new EntryReader(p, entry, obj, WORKLOAD_KEYS);
  const name = r.required("name");
  const namespace = r.required("namespace");
  const workloadIps = r.stringList("workloadIps", checkIp) ?? [];
  const rawIps = r.raw("workloadIps");
  if (isAbsent(rawIps) || (Array.isArray(rawIps) && rawIps.length === 0)) {
    p.add(entry, "workloadIps", rawIps, "at least one workload IP is required");
  }
  const services = new Map<string, PortMap>();
  const rawServices = r.raw("services");
  if (!isAbsent(rawServices) && !isObj(rawServices)) {
    p.add(entry, "services", rawServices, `must be a mapping of "<namespace>/<hostname>" to a port map; got ${typeName(rawServices)}`);
  } else if (rawServices) {
    for (const [key, ports] of Object.entries(rawServices)) {
      const field = keyPath("services", key);
      if (!/^[^/]+\/[^/]+$/.test(key)) p.add(entry, field, key, 'key must be "<namespace>/<hostname>"');
      else services.set(key, readPortMap(p, entry, field, ports));
    }
  }
  return {
    uid: r.string("uid") || `${r.string("clusterId", d.clusterId)}//v1/Pod/${namespace}/${name}`,
    name,
    namespace,
    serviceAccount: r.string("serviceAccount", "default"),
    workloadIps,
    protocol: r.oneOf("protocol", ["HBONE", "TCP"], "TCP"),
    node: r.string("node", ""),
    trustDomain: r.string("trustDomain", d.trustDomain),
    clusterId: r.string("clusterId", d.clusterId),
    canonicalName: r.string("canonicalName", name),
    canonicalRevision: r.string("canonicalRevision", "latest"),
    workloadType: r.string("workloadType", "pod"),
    workloadName: r.string("workloadName", name),
    status: r.oneOf("status", ["Healthy", "Unhealthy"], "Healthy"),
    capacity: r.integer("capacity", 1, 1_000_000, 1),
    labels: r.stringMap("labels"),
    services,
  };
}

function readService(p: ProblemList, entry: string, obj: Obj): Service {
  const r = new EntryReader(p, entry, obj, SERVICE_KEYS);
  const name = r.required("name");
  const namespace = r.required("namespace");
  const vips: { network: string; address: string }[] = [];
  r.stringList("vips", (s) => {
    const vip = parseVip(s);
    if (!vip) return { reason: 'must be "<network>/<ip>", "/<ip>" or "<ip>" with a valid IP' };
    vips.push(vip);
    return { value: s };
  });
  return {
    name,
    namespace,
    hostname: r.string("hostname", `${name}.${namespace}.svc.cluster.local`),
    vips,
    ports: r.portMap("ports"),
    subjectAltNames: r.stringList("subjectAltNames") ?? [],
  };
}

/** Reads one top-level list, handing each mapping item to `read`. */
function readList<T>(p: ProblemList, root: Obj, key: string, read: (entry: string, o: Obj) => T): T[] {
  const v = root[key];
  if (isAbsent(v)) return [];
  if (!Array.isArray(v)) {
    p.add(key, "", v, `must be a list; got ${typeName(v)}`);
    return [];
  }
  const out: T[] = [];
  v.forEach((item: unknown, i) => {
    const entry = `${key}[${i}]`;
    if (isObj(item)) out.push(read(entry, item));
    else p.add(entry, "", item, `must be a mapping; got ${typeName(item)}`);
  });
  return out;
}

/** Cross-entry checks: unique uids, IPs, VIPs, service and policy names; workload service keys exist. */
function crossCheck(p: ProblemList, s: MeshSnapshot): void {
  const firstSeen = <K>(seen: Map<K, string>, key: K, entry: string): string | undefined => {
    const prev = seen.get(key);
    if (prev === undefined) seen.set(key, entry);
    return prev;
  };
  const uids = new Map<string, string>();
  const ips = new Map<string, string>();
  const svcKeys = new Map<string, string>();
  const vips = new Map<string, string>();
  const policyKeys = new Map<string, string>();
  s.services.forEach((svc, i) => {
    const e = `services[${i}]`;
    const prev = firstSeen(svcKeys, serviceKey(svc), e);
    if (prev) p.add(e, "hostname", svc.hostname, `service "${serviceKey(svc)}" is already defined by ${prev}`);
    svc.vips.forEach((vip, j) => {
      const prevVip = firstSeen(vips, vip.address, `${e} (${svc.namespace}/${svc.name})`);
      if (prevVip) p.add(e, `vips[${j}]`, vip.address, `VIP is already used by ${prevVip}`);
    });
  });
  s.workloads.forEach((w, i) => {
    const e = `workloads[${i}]`;
    const prev = firstSeen(uids, w.uid, e);
    if (prev) p.add(e, "uid", w.uid, `duplicate uid, already used by ${prev}`);
    w.workloadIps.forEach((ip, j) => {
      const prevIp = firstSeen(ips, ip, `${e} (${w.namespace}/${w.name})`);
      if (prevIp) p.add(e, `workloadIps[${j}]`, ip, `IP is already used by ${prevIp}`);
    });
    for (const key of w.services.keys()) {
      if (!svcKeys.has(key)) p.add(e, keyPath("services", key), key, `no service "${key}" is defined in services (key is "<namespace>/<hostname>")`);
    }
  });
  s.policies.forEach((pol, i) => {
    const e = `policies[${i}]`;
    const prev = firstSeen(policyKeys, `${pol.namespace}/${pol.name}`, e);
    if (prev) p.add(e, "name", pol.name, `policy "${pol.namespace}/${pol.name}" is already defined by ${prev}`);
  });
}

/**
 * Parses the text of a local config file. `source` names the file in problems.
 * An empty file, or missing lists, give an empty snapshot.
 * @throws ConfigError listing every problem found.
 */
export function parseLocalConfig(text: string, source: string, defaults: LocalConfigDefaults): MeshSnapshot {
  const p = new ProblemList(source);
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  for (const e of doc.errors) {
    const at = e.linePos?.[0];
    const line = at ? (text.split("\n")[at.line - 1] ?? "").trim() : "";
    p.add(at ? `line ${at.line}, column ${at.col}` : "(document)", "", line, `YAML syntax: ${(e.message.split("\n")[0] ?? e.code).replace(/ at line \d+, column \d+:?$/, "")}`);
  }
  if (p.problems.length > 0) throw new ConfigError(p.problems);
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new ConfigError([{ source, entry: "(document)", field: "", value: "", reason: `YAML: ${e instanceof Error ? e.message : String(e)}` }]);
  }
  if (isAbsent(root)) return { workloads: [], services: [], policies: [] };
  if (!isObj(root)) throw new ConfigError([{ source, entry: "(document)", field: "", value: typeName(root), reason: "the file must be a mapping with workloads, services and policies lists" }]);
  for (const k of Object.keys(root)) {
    if (!(TOP_KEYS as readonly string[]).includes(k)) p.add(k, "", root[k], unknownKeyReason(k, TOP_KEYS));
  }
  const snapshot: MeshSnapshot = {
    workloads: readList(p, root, "workloads", (e, o) => readWorkload(p, e, o, defaults)),
    services: readList(p, root, "services", (e, o) => readService(p, e, o)),
    policies: readList<Policy>(p, root, "policies", (e, o) => readPolicy(p, e, o)),
  };
  crossCheck(p, snapshot);
  if (p.problems.length > 0) throw new ConfigError(p.problems);
  return snapshot;
}
