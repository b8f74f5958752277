/**
 * The agent's configuration: one table of environment variables (Istio names where Istio
 * has one), each parsed once with a default, resolved into one complete typed `Config`.
 * Every invalid variable is reported at once (name, value, reason) and the agent does not start.
 */
import os from "node:os";
import path from "node:path";
import { ConfigError, DEFAULT_LOCAL_CONFIG_MAX_BYTES, formatHostPort, type ConfigProblem } from "@zt/state";
import {
  Invalid,
  parseBindAddr,
  parseDuration,
  parseGrpcAddress,
  parseInboundAddr,
  parseInt_,
  parseLogLevelValue,
  parseNonEmpty,
  parseOneOf,
  parseSocketDir,
  parseTrustDomain,
  type BindAddr,
  type InboundAddr,
} from "./config-values.js";
import type { LogLevel } from "./logging.js";

export type { BindAddr, InboundAddr } from "./config-values.js";

export type OutboundTrafficPolicy = "ALLOW_ANY" | "REGISTRY_ONLY";
export type LogFormat = "json" | "text";
export type RedirectMode = "none" | "tproxy";

export interface Config {
  readonly nodeName: string;
  readonly clusterId: string;
  readonly trustDomain: string;
  /** Local workload file; undefined means the agent's embedded default file. */
  readonly localXdsPath: string | undefined;
  /**
   * Where the mesh comes from (DISCOVERY, resolved at load): "file" (LOCAL_XDS_PATH, else the
   * embedded example) or "kubernetes" (the API server: in a cluster, or KUBECONFIG). "auto"
   * is the file when LOCAL_XDS_PATH is set, else Kubernetes inside a cluster
   * (KUBERNETES_SERVICE_HOST), else the embedded file.
   */
  readonly discovery: "file" | "kubernetes" | "xds";
  /**
   * Delta xDS server (istiod or zt-controller), "host:port"; with DISCOVERY=auto, setting it
   * chooses xDS. Undefined: no xDS.
   */
  readonly xdsAddress: string | undefined;
  /** Istio CA (IstioCertificateService), "host:port"; undefined: the built-in CA signs (the embedded default). */
  readonly caAddress: string | undefined;
  /** PEM roots the CA's and the xDS server's TLS certificates must chain to (Istio mounts the mesh root here). */
  readonly caRootCa: string;
  readonly xdsRootCa: string;
  /** TLS name to check the CA's / xDS server's certificate against instead of the address's host. */
  readonly altCaHostname: string | undefined;
  readonly altXdsHostname: string | undefined;
  /** Projected ServiceAccount token (audience istio-ca), re-read for every call. */
  readonly authToken: string;
  /** This agent's pod, for its xDS node id and metadata (the DaemonSet sets them from the downward API). */
  readonly podName: string;
  readonly podNamespace: string;
  readonly instanceIp: string;
  /** A workload file larger than this is refused unread (the last good state is kept). */
  readonly localXdsMaxBytes: number;
  readonly outboundTrafficPolicy: OutboundTrafficPolicy;
  readonly logFormat: LogFormat;
  readonly logLevel: LogLevel;
  readonly poolMaxStreamsPerConnection: number;
  readonly poolUnusedReleaseTimeoutMs: number;
  readonly http2StreamWindowSize: number;
  readonly http2ConnectionWindowSize: number;
  /** PING an idle HBONE connection this often, both sides (contract: 10 s). */
  readonly hboneKeepaliveIntervalMs: number;
  /** Close an HBONE connection whose peer has not answered a PING for this long (contract: 20 s). */
  readonly hboneKeepaliveTimeoutMs: number;
  /** Inbound: close an HBONE connection that has carried no stream for this long (the source's pool releases its own after POOL_UNUSED_RELEASE_TIMEOUT). */
  readonly hboneIdleTimeoutMs: number;
  /** Bytes all HBONE connections together may hold unconsumed before connections holding data get no new window. */
  readonly hboneBufferBudget: number;
  readonly hboneMaxConnectionsPerIdentity: number;
  readonly hboneMaxStreamsPerIdentity: number;
  /** Data-path worker threads, each with its own listeners and pool (Istio's name; default 2, as in Istio). */
  readonly workerThreads: number;
  readonly secretTtlMs: number;
  /** Absolute path of the built-in CA's Istio-style `cacerts` directory. */
  readonly caCertsDir: string;
  readonly redirectMode: RedirectMode;
  /** tproxy: absolute path of the directory (shared by the node's agents) where each one announces itself. */
  readonly handoverDir: string;
  /**
   * Written once this agent serves its own control ports (after "ready to accept"), removed
   * when it stops: for a startup probe that must not take the node's other agent's answer.
   */
  readonly startedFile: string | undefined;
  readonly drainTimeoutMs: number;
  readonly adminAddr: BindAddr;
  readonly statsAddr: BindAddr;
  readonly readinessAddr: BindAddr;
  readonly outboundAddr: BindAddr;
  /** HBONE inbound: one address, or `workloads:<port>` = one listener per local workload IP. */
  readonly inboundAddr: InboundAddr;
  readonly inboundPlaintextAddr: BindAddr;
  readonly socks5Addr: BindAddr;
}

/** One row of the table: the variable, its default, and how to parse it (throwing `Invalid`). */
interface Var<T> {
  readonly env: string;
  readonly default: () => T;
  readonly parse: (raw: string) => T;
  /** The default as an operator writes it (e.g. "5m"), for `--help`; derived from `default()` when absent. */
  readonly shown?: string;
  /** The accepted values of a closed set, for `--help`. */
  readonly values?: readonly string[];
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_WINDOW = 2 ** 31 - 1;
const MiB = 1024 * 1024;

const bind = (env: string, def: string): Var<BindAddr> => ({ env, default: () => parseBindAddr(def), parse: parseBindAddr, shown: def });
const duration = (env: string, def: string, minMs: number): Var<number> => ({
  env,
  shown: def,
  default: () => parseDuration(def, minMs, MAX_TIMER_MS),
  parse: (raw) => parseDuration(raw, minMs, MAX_TIMER_MS),
});
const int = (env: string, def: number, min: number, max: number): Var<number> => ({
  env,
  default: () => def,
  parse: (raw) => parseInt_(raw, min, max),
});
const oneOf = <T extends string>(env: string, values: readonly T[], def: T, caseInsensitive = true): Var<T> => ({
  env,
  values,
  default: () => def,
  parse: (raw) => parseOneOf(raw, values, caseInsensitive),
});
const text = (env: string, def: () => string): Var<string> => ({ env, default: def, parse: parseNonEmpty });

/** THE table. An unset or empty variable takes its default. */
const TABLE: { readonly [K in keyof Config]: Var<Config[K]> } = {
  nodeName: text("NODE_NAME", () => os.hostname()),
  clusterId: text("CLUSTER_ID", () => "Kubernetes"),
  trustDomain: { env: "TRUST_DOMAIN", default: () => "cluster.local", parse: parseTrustDomain },
  localXdsPath: { env: "LOCAL_XDS_PATH", default: () => undefined, parse: (raw) => raw, shown: "(the embedded example file)" },
  discovery: oneOf("DISCOVERY", ["auto", "file", "kubernetes", "xds"], "auto") as unknown as Var<Config["discovery"]>,
  xdsAddress: { env: "XDS_ADDRESS", default: () => undefined, parse: parseGrpcAddress, shown: "(none: no xDS)" },
  caAddress: { env: "CA_ADDRESS", default: () => undefined, parse: parseGrpcAddress, shown: "(none: the built-in CA)" },
  caRootCa: { env: "CA_ROOT_CA", default: () => "/var/run/secrets/istio/root-cert.pem", parse: (raw) => path.resolve(raw) },
  xdsRootCa: { env: "XDS_ROOT_CA", default: () => "/var/run/secrets/istio/root-cert.pem", parse: (raw) => path.resolve(raw) },
  altCaHostname: { env: "ALT_CA_HOSTNAME", default: () => undefined, parse: parseNonEmpty, shown: "(the host of CA_ADDRESS)" },
  altXdsHostname: { env: "ALT_XDS_HOSTNAME", default: () => undefined, parse: parseNonEmpty, shown: "(the host of XDS_ADDRESS)" },
  authToken: { env: "AUTH_TOKEN", default: () => "/var/run/secrets/tokens/istio-token", parse: (raw) => path.resolve(raw) },
  podName: text("POD_NAME", () => os.hostname()),
  podNamespace: text("POD_NAMESPACE", () => "istio-system"),
  instanceIp: { env: "INSTANCE_IP", default: () => "", parse: parseNonEmpty, shown: "(none)" },
  localXdsMaxBytes: int("LOCAL_XDS_MAX_BYTES", DEFAULT_LOCAL_CONFIG_MAX_BYTES, 1024, 1024 * MiB),
  outboundTrafficPolicy: oneOf("OUTBOUND_TRAFFIC_POLICY", ["ALLOW_ANY", "REGISTRY_ONLY"], "ALLOW_ANY"),
  logFormat: oneOf("LOG_FORMAT", ["json", "text"], "json"),
  logLevel: { env: "LOG_LEVEL", default: () => "info", parse: parseLogLevelValue },
  poolMaxStreamsPerConnection: int("POOL_MAX_STREAMS_PER_CONNECTION", 100, 1, 1000),
  poolUnusedReleaseTimeoutMs: duration("POOL_UNUSED_RELEASE_TIMEOUT", "5m", 1),
  http2StreamWindowSize: int("HTTP2_STREAM_WINDOW_SIZE", 4 * MiB, 65_535, MAX_WINDOW),
  http2ConnectionWindowSize: int("HTTP2_CONNECTION_WINDOW_SIZE", 16 * MiB, 65_535, MAX_WINDOW),
  hboneKeepaliveIntervalMs: duration("HBONE_KEEPALIVE_INTERVAL", "10s", 100),
  hboneKeepaliveTimeoutMs: duration("HBONE_KEEPALIVE_TIMEOUT", "20s", 100),
  hboneIdleTimeoutMs: duration("HBONE_IDLE_TIMEOUT", "10m", 100),
  hboneBufferBudget: int("HBONE_BUFFER_BUDGET", 256 * MiB, MiB, 2 ** 40),
  hboneMaxConnectionsPerIdentity: int("HBONE_MAX_CONNECTIONS_PER_IDENTITY", 1024, 1, 1_000_000),
  hboneMaxStreamsPerIdentity: int("HBONE_MAX_STREAMS_PER_IDENTITY", 2048, 1, 1_000_000),
  workerThreads: int("ZTUNNEL_WORKER_THREADS", 2, 1, 64),
  secretTtlMs: duration("SECRET_TTL", "24h", 10_000),
  caCertsDir: text("CA_CERTS_DIR", () => "./.ztunnel/cacerts"),
  redirectMode: oneOf("REDIRECT_MODE", ["none", "tproxy"], "none"),
  handoverDir: { env: "HANDOVER_DIR", default: () => "/var/run/ztunnel/handover", parse: parseSocketDir },
  startedFile: { env: "STARTED_FILE", default: () => undefined, parse: (raw) => path.resolve(raw), shown: "(none)" },
  drainTimeoutMs: duration("DRAIN_TIMEOUT", "5s", 0),
  adminAddr: bind("ADMIN_ADDR", "127.0.0.1:15000"),
  statsAddr: bind("STATS_ADDR", "0.0.0.0:15020"),
  readinessAddr: bind("READINESS_ADDR", "0.0.0.0:15021"),
  outboundAddr: bind("OUTBOUND_ADDR", "0.0.0.0:15001"),
  inboundAddr: { env: "INBOUND_ADDR", default: () => parseInboundAddr("0.0.0.0:15008"), parse: parseInboundAddr },
  inboundPlaintextAddr: bind("INBOUND_PLAINTEXT_ADDR", "0.0.0.0:15006"),
  socks5Addr: bind("SOCKS5_ADDR", "127.0.0.1:15080"),
};

/** The environment variable behind each config key (for messages such as "set ADMIN_ADDR"). */
export const ENV_NAMES: { readonly [K in keyof Config]: string } = Object.fromEntries(
  Object.entries(TABLE).map(([k, v]) => [k, v.env]),
) as { [K in keyof Config]: string };

export interface EnvVarHelp {
  readonly env: string;
  /** The default as text. */
  readonly default: string;
  readonly values?: readonly string[];
}

/** Every variable of the table with its default, in table order (what `ztunnel --help` lists). */
export function envHelp(): EnvVarHelp[] {
  return Object.values<Var<unknown>>(TABLE).map((v) => ({ env: v.env, default: v.shown ?? showValue(v.default()), ...(v.values ? { values: v.values } : {}) }));
}

function showValue(v: unknown): string {
  if (v === undefined) return "(unset)";
  if (typeof v === "object" && v !== null && "port" in v) return formatBindAddr(v as BindAddr);
  return String(v);
}

/** Parse the environment once; throws ConfigError listing every invalid variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: ConfigProblem[] = [];
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(TABLE) as (keyof Config)[]) {
    const v: Var<unknown> = TABLE[key];
    const raw = env[v.env]?.trim();
    if (raw === undefined || raw === "") {
      out[key] = v.default();
      continue;
    }
    try {
      out[key] = v.parse(raw);
    } catch (err) {
      if (!(err instanceof Invalid)) throw err;
      problems.push({ source: "env", entry: v.env, field: "", value: JSON.stringify(raw), reason: err.message });
    }
  }
  const config = out as unknown as Config;
  if (problems.length === 0 && config.http2ConnectionWindowSize < config.http2StreamWindowSize) {
    problems.push({
      source: "env",
      entry: "HTTP2_CONNECTION_WINDOW_SIZE",
      field: "",
      value: String(config.http2ConnectionWindowSize),
      reason: `must be at least HTTP2_STREAM_WINDOW_SIZE (${config.http2StreamWindowSize})`,
    });
  }
  if (problems.length === 0 && config.redirectMode === "tproxy") problems.push(...captureProblems(config));
  const chosen = config.discovery as string;
  if (chosen === "kubernetes" && config.localXdsPath !== undefined) {
    problems.push({ source: "env", entry: "DISCOVERY", field: "", value: "kubernetes", reason: "LOCAL_XDS_PATH is set too: the workload file and the Kubernetes API cannot both be the source; unset one" });
  }
  if (chosen === "xds" && config.xdsAddress === undefined) {
    problems.push({ source: "env", entry: "DISCOVERY", field: "", value: "xds", reason: "XDS_ADDRESS is not set: say which xDS server to follow" });
  }
  if (config.xdsAddress !== undefined && (chosen === "kubernetes" || chosen === "file" || config.localXdsPath !== undefined)) {
    const other = config.localXdsPath !== undefined ? "LOCAL_XDS_PATH is set" : `DISCOVERY=${chosen}`;
    problems.push({ source: "env", entry: "XDS_ADDRESS", field: "", value: config.xdsAddress, reason: `${other} too: exactly one source of the mesh can be chosen; unset one` });
  }
  const discovery =
    chosen === "auto" ? (config.xdsAddress !== undefined ? "xds" : config.localXdsPath === undefined && env["KUBERNETES_SERVICE_HOST"] ? "kubernetes" : "file") : (chosen as Config["discovery"]);
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...config, discovery, caCertsDir: path.resolve(config.caCertsDir), handoverDir: path.resolve(config.handoverDir) };
}

/**
 * Capture delivers every captured connection of a kind to one address (TPROXY --on-ip):
 * the three data-path listeners must each be the IPv4 wildcard or that one address.
 */
function captureProblems(c: Config): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const problem = (entry: string, value: string, reason: string): void => void out.push({ source: "env", entry, field: "", value, reason });
  if (c.inboundAddr.kind === "workloads") {
    problem("INBOUND_ADDR", formatBindAddr(c.inboundAddr), "per-workload HBONE listeners are for agents sharing one host without capture; REDIRECT_MODE=tproxy needs one address (default 0.0.0.0:15008)");
    return out;
  }
  const addrs: [string, BindAddr][] = [["OUTBOUND_ADDR", c.outboundAddr], ["INBOUND_ADDR", c.inboundAddr], ["INBOUND_PLAINTEXT_ADDR", c.inboundPlaintextAddr]];
  const specific = new Set(addrs.map(([, a]) => a.ip).filter((ip) => ip !== "0.0.0.0"));
  for (const [env, a] of addrs) {
    if (a.ip.includes(":")) problem(env, formatBindAddr(a), "REDIRECT_MODE=tproxy captures IPv4 only; bind an IPv4 address or 0.0.0.0");
    else if (a.port === 0) problem(env, formatBindAddr(a), "REDIRECT_MODE=tproxy needs a fixed port for its rules");
    else if (specific.size > 1) problem(env, formatBindAddr(a), "with REDIRECT_MODE=tproxy, OUTBOUND_ADDR, INBOUND_ADDR and INBOUND_PLAINTEXT_ADDR must be 0.0.0.0 or one shared address");
  }
  return out;
}

/** The effective config as a plain object: logged at start and shown in /config_dump. */
export function describeConfig(c: Config): Record<string, string | number | null> {
  return {
    nodeName: c.nodeName,
    clusterId: c.clusterId,
    trustDomain: c.trustDomain,
    localXdsPath: c.localXdsPath ?? null,
    discovery: c.discovery,
    xdsAddress: c.xdsAddress ?? null,
    caAddress: c.caAddress ?? null,
    caRootCa: c.caRootCa,
    xdsRootCa: c.xdsRootCa,
    altCaHostname: c.altCaHostname ?? null,
    altXdsHostname: c.altXdsHostname ?? null,
    authToken: c.authToken,
    podName: c.podName,
    podNamespace: c.podNamespace,
    instanceIp: c.instanceIp,
    localXdsMaxBytes: c.localXdsMaxBytes,
    outboundTrafficPolicy: c.outboundTrafficPolicy,
    logFormat: c.logFormat,
    logLevel: c.logLevel,
    poolMaxStreamsPerConnection: c.poolMaxStreamsPerConnection,
    poolUnusedReleaseTimeoutMs: c.poolUnusedReleaseTimeoutMs,
    http2StreamWindowSize: c.http2StreamWindowSize,
    http2ConnectionWindowSize: c.http2ConnectionWindowSize,
    hboneKeepaliveIntervalMs: c.hboneKeepaliveIntervalMs,
    hboneKeepaliveTimeoutMs: c.hboneKeepaliveTimeoutMs,
    hboneIdleTimeoutMs: c.hboneIdleTimeoutMs,
    hboneBufferBudget: c.hboneBufferBudget,
    hboneMaxConnectionsPerIdentity: c.hboneMaxConnectionsPerIdentity,
    hboneMaxStreamsPerIdentity: c.hboneMaxStreamsPerIdentity,
    workerThreads: c.workerThreads,
    secretTtlMs: c.secretTtlMs,
    caCertsDir: c.caCertsDir,
    redirectMode: c.redirectMode,
    handoverDir: c.handoverDir,
    startedFile: c.startedFile ?? null,
    drainTimeoutMs: c.drainTimeoutMs,
    adminAddr: formatBindAddr(c.adminAddr),
    statsAddr: formatBindAddr(c.statsAddr),
    readinessAddr: formatBindAddr(c.readinessAddr),
    outboundAddr: formatBindAddr(c.outboundAddr),
    inboundAddr: formatBindAddr(c.inboundAddr),
    inboundPlaintextAddr: formatBindAddr(c.inboundPlaintextAddr),
    socks5Addr: formatBindAddr(c.socks5Addr),
  };
}

/** "ip:port", "[v6]:port", or "workloads:port". */
export function formatBindAddr(a: BindAddr | InboundAddr): string {
  if ("kind" in a && a.kind === "workloads") return `workloads:${a.port}`;
  return formatHostPort((a as BindAddr).ip, a.port);
}
