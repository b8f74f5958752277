/**
 * zt-controller's configuration: one table of environment variables (Istio's names where
 * istiod has one), each parsed once with a default; every invalid one is reported at once.
 */
import path from "node:path";
import { ConfigError, type ConfigProblem } from "@zt/state";
import { Invalid, parseBindAddr, parseDuration, parseLogLevelValue, parseOneOf, parseTrustDomain, type BindAddr, type LogLevel } from "@zt/ztunnel";

export interface ControllerConfig {
  /** Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); generated there when empty. */
  readonly caCertsDir: string;
  readonly trustDomain: string;
  readonly clusterId: string;
  /** Service accounts ("<namespace>/<name>") allowed to ask for certificates on behalf of pods on their node. */
  readonly trustedNodeAccounts: readonly string[];
  readonly maxWorkloadCertTtlMs: number;
  /** A gRPC connection this old (±10%) is told GOAWAY, so that clients reconnect and spread over the replicas (istiod: 30 min). */
  readonly maxServerConnectionAgeMs: number;
  /** gRPC (TLS): the CA and delta xDS. */
  readonly grpcAddr: BindAddr;
  /** HTTP: /metrics, /ready, /debug/status. */
  readonly monitoringAddr: BindAddr;
  /** The controller's namespace and Service name: its serving certificate's DNS names and where the root ConfigMap goes. */
  readonly podNamespace: string;
  readonly serviceName: string;
  /** Publish the mesh root as ConfigMap istio-ca-root-cert in podNamespace (what the agents mount). */
  readonly publishRootCert: boolean;
  readonly logFormat: "json" | "text";
  readonly logLevel: LogLevel;
}

interface Var<T> {
  readonly env: string;
  readonly default: () => T;
  readonly parse: (raw: string) => T;
  readonly shown?: string;
}

const accounts = (raw: string): string[] => {
  const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const a of list) if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(a)) throw new Invalid(`"${a}" is not <namespace>/<service account>`);
  if (list.length === 0) throw new Invalid("name at least one <namespace>/<service account>");
  return list;
};
const bool = (raw: string): boolean => parseOneOf(raw, ["true", "false"], true) === "true";
const text = (env: string, def: string): Var<string> => ({ env, default: () => def, parse: (raw) => raw });

const TABLE: { readonly [K in keyof ControllerConfig]: Var<ControllerConfig[K]> } = {
  caCertsDir: { env: "CA_CERTS_DIR", default: () => "./.zt-controller/cacerts", parse: (raw) => raw },
  trustDomain: { env: "TRUST_DOMAIN", default: () => "cluster.local", parse: parseTrustDomain },
  clusterId: text("CLUSTER_ID", "Kubernetes"),
  trustedNodeAccounts: { env: "CA_TRUSTED_NODE_ACCOUNTS", default: () => ["istio-system/ztunnel"], parse: accounts, shown: "istio-system/ztunnel" },
  maxWorkloadCertTtlMs: { env: "MAX_WORKLOAD_CERT_TTL", default: () => 90 * 24 * 3600_000, parse: (raw) => parseDuration(raw, 60_000, 2 ** 31 - 1), shown: "90d" },
  maxServerConnectionAgeMs: { env: "MAX_SERVER_CONNECTION_AGE", default: () => 30 * 60_000, parse: (raw) => parseDuration(raw, 1000, 2 ** 31 - 1), shown: "30m" },
  grpcAddr: { env: "GRPC_ADDR", default: () => parseBindAddr("0.0.0.0:15012"), parse: parseBindAddr, shown: "0.0.0.0:15012" },
  monitoringAddr: { env: "MONITORING_ADDR", default: () => parseBindAddr("0.0.0.0:15014"), parse: parseBindAddr, shown: "0.0.0.0:15014" },
  podNamespace: text("POD_NAMESPACE", "istio-system"),
  serviceName: text("SERVICE_NAME", "zt-controller"),
  publishRootCert: { env: "PUBLISH_ROOT_CERT", default: () => true, parse: bool, shown: "true" },
  logFormat: { env: "LOG_FORMAT", default: () => "json", parse: (raw) => parseOneOf(raw, ["json", "text"], true) },
  logLevel: { env: "LOG_LEVEL", default: () => "info", parse: parseLogLevelValue },
};

export function loadControllerConfig(env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const problems: ConfigProblem[] = [];
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(TABLE) as (keyof ControllerConfig)[]) {
    const v: Var<unknown> = TABLE[key];
    const raw = env[v.env]?.trim();
    try {
      out[key] = raw === undefined || raw === "" ? v.default() : v.parse(raw);
    } catch (err) {
      if (!(err instanceof Invalid)) throw err;
      problems.push({ source: "env", entry: v.env, field: "", value: JSON.stringify(raw), reason: err.message });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const c = out as unknown as ControllerConfig;
  return { ...c, caCertsDir: path.resolve(c.caCertsDir) };
}

/** Every variable with its default, for --help. */
export function controllerEnvHelp(): { env: string; default: string }[] {
  return Object.values<Var<unknown>>(TABLE).map((v) => ({ env: v.env, default: v.shown ?? String(v.default()) }));
}
