/**
 * What `ztunnel config` shows, as istioctl's `ztunnel-config` does: rows of one view
 * (workloads, services, policies, certificates) taken from an agent's `/config_dump`,
 * filtered by namespace and by the workloads' node; and the rows of its live connections
 * (`/debug/connections`). Pure: no I/O, so each view is tested on a dump as it is.
 */
import { formatBytes } from "@zt/state";

/** The views of `/config_dump` (what `all` shows). */
export const VIEWS = ["workloads", "services", "policies", "certificates"] as const;
export type View = (typeof VIEWS)[number];

export interface ViewFilters {
  readonly namespace?: string | undefined;
  /** Workloads (and the services' endpoints counted) on this node only. */
  readonly workloadNode?: string | undefined;
}

export type Row = Record<string, string | number | boolean | null>;

interface DumpWorkload {
  name: string;
  namespace: string;
  serviceAccount: string;
  workloadIps: string[];
  protocol: string;
  node: string;
  status: string;
  trustDomain: string;
  services: Record<string, Record<string, number>>;
}
interface DumpService {
  name: string;
  namespace: string;
  hostname: string;
  vips: { network: string; address: string }[];
  ports: Record<string, number>;
}
interface DumpPolicy {
  name: string;
  namespace: string;
  scope: string;
  action: string;
  dryRun: boolean;
  rules: unknown[];
}
interface DumpCert {
  identity: string;
  status: string;
  certChain: { serialNumber: string; validFrom: string; expirationTime: string }[];
  rotatesAt?: string;
  lastError?: { code: string; message: string };
}
export interface ConfigDump {
  workloads: DumpWorkload[];
  services: DumpService[];
  policies: DumpPolicy[];
  certificates: DumpCert[];
  config: { nodeName: string };
}

const inNamespace = (f: ViewFilters, ns: string): boolean => f.namespace === undefined || f.namespace === ns;

/** "1h 2m", "3m 4s", "5s"; "now" at or past zero. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return "now";
  const s = Math.floor(ms / 1000);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function viewRows(view: View, dump: ConfigDump, f: ViewFilters, now = Date.now()): Row[] {
  const workloads = dump.workloads.filter((w) => f.workloadNode === undefined || w.node === f.workloadNode);
  switch (view) {
    case "workloads":
      return workloads
        .filter((w) => inNamespace(f, w.namespace))
        .map((w) => ({ namespace: w.namespace, name: w.name, address: w.workloadIps.join(","), node: w.node, protocol: w.protocol, status: w.status, identity: `spiffe://${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}` }));
    case "services":
      return dump.services
        .filter((s) => inNamespace(f, s.namespace))
        .map((s) => {
          const key = `${s.namespace}/${s.hostname}`;
          const endpoints = workloads.filter((w) => key in (w.services ?? {}));
          return {
            namespace: s.namespace,
            name: s.name,
            hostname: s.hostname,
            vips: s.vips.map((v) => v.address).join(","),
            ports: Object.entries(s.ports).map(([p, t]) => `${p}->${t}`).join(","),
            endpoints: endpoints.length,
            healthy: endpoints.filter((w) => w.status === "Healthy").length,
          };
        });
    case "policies":
      return dump.policies.filter((p) => inNamespace(f, p.namespace)).map((p) => ({ namespace: p.namespace, name: p.name, scope: p.scope, action: p.action, dryRun: p.dryRun, rules: p.rules.length }));
    case "certificates":
      return dump.certificates
        .filter((c) => f.namespace === undefined || c.identity.includes(`/ns/${f.namespace}/sa/`))
        .map((c) => {
          const leaf = c.certChain[0];
          return {
            identity: c.identity,
            status: c.status,
            serial: leaf?.serialNumber ?? null,
            notBefore: leaf?.validFrom ?? null,
            notAfter: leaf?.expirationTime ?? null,
            rotatesIn: c.rotatesAt ? formatDuration(Date.parse(c.rotatesAt) - now) : null,
            error: c.lastError ? `${c.lastError.code}: ${c.lastError.message}` : null,
          };
        });
  }
}

/** One side of a listed connection (`/debug/connections`). */
export interface ListedPeer {
  addr: string;
  workload: string | null;
  namespace: string | null;
  identity: string | null;
}
/** One connection of `/debug/connections`. */
export interface ListedConnection {
  worker: number;
  direction: "inbound" | "outbound";
  listener: string;
  state: string;
  src: ListedPeer;
  dst: ListedPeer & { service: string | null; hboneAddr: string | null };
  security: string;
  bytesSent: number;
  bytesRecv: number;
  startTime: string;
  ageMs: number;
}
/** `/debug/connections` as a whole. */
export interface ConnectionListing {
  node: string;
  connections: ListedConnection[];
  count: number;
  truncated: boolean;
  held: number;
  unanswered: number[];
}

const side = (p: ListedPeer): string => (p.workload ? `${p.addr} (${p.namespace ?? "?"}/${p.workload})` : p.addr);

/** The table of `ztunnel config connections`: both sides, identities, bytes each way, age and state. */
export function connectionRows(list: readonly ListedConnection[]): Row[] {
  return list.map((c) => ({
    direction: c.direction,
    source: side(c.src),
    destination: side(c.dst),
    service: c.dst.service,
    srcIdentity: c.src.identity,
    dstIdentity: c.dst.identity,
    sent: formatBytes(c.bytesSent),
    recv: formatBytes(c.bytesRecv),
    age: c.ageMs > 0 ? formatDuration(c.ageMs) : "0s",
    state: c.state,
  }));
}

/** Columns padded to their widest cell, headers in capitals (kubectl's look); "-" for an empty cell. */
export function formatTable(rows: readonly Row[], columns?: readonly string[]): string {
  const cols = columns ?? (rows[0] ? Object.keys(rows[0]) : []);
  if (cols.length === 0) return "(none)\n";
  const header = cols.map((c) => c.replace(/([a-z])([A-Z])/g, "$1 $2").toUpperCase());
  const cells = rows.map((r) => cols.map((c) => (r[c] === null || r[c] === undefined || r[c] === "" ? "-" : String(r[c]))));
  const widths = cols.map((_, i) => Math.max(header[i]!.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((x, i) => (i === r.length - 1 ? x : x.padEnd(widths[i]!))).join("  ");
  return `${[line(header), ...cells.map(line)].join("\n")}\n`;
}
