/**
 * zt-controller: a control plane for clusters without istiod. It holds the mesh's root
 * key (CA_CERTS_DIR, the Secret it alone mounts) and serves, on one TLS gRPC port, Istio's
 * CA API (certificates for the node agents, checked by TokenReview and by where pods run)
 * and delta xDS (workloads, services and policies from the Kubernetes API). The agents
 * then need neither the root key nor API watches of their own.
 */
import type http from "node:http";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { collectDefaultMetrics, Registry } from "prom-client";
import { loadOrCreateCa } from "@zt/identity";
import { ADS_SERVICE, CA_SERVICE } from "@zt/istio";
import { formatBindAddr, openKubeSource } from "@zt/ztunnel";
import { createCaServer } from "./ca-server.js";
import type { ControllerConfig } from "./config.js";
import { createMonitoringServer } from "./monitoring.js";
import { createPodIndex } from "./pod-index.js";
import { publishRoot, type RootPublisher } from "./root-publisher.js";
import { startServingCert } from "./serving-cert.js";
import { cachedTokenReviewer } from "./token-cache.js";
import { createTokenReviewer } from "./token-review.js";
import { createXdsAuthenticator } from "./xds-auth.js";
import { createXdsServer } from "./xds-server.js";

export const CONTROLLER_VERSION = "0.1.0";

/** The serving certificate lasts this long (capped by the CA's own); it is re-issued at half of it. */
const SERVING_TTL_MS = 30 * 24 * 3600_000;

export interface Controller {
  /** "host:port" of the gRPC and monitoring listeners (useful when ports were 0). */
  readonly grpcAddress: string;
  readonly monitoringAddress: string;
  /** The mesh root (PEM), what agents are given as CA_ROOT_CA / XDS_ROOT_CA. */
  readonly rootPem: string;
  pending(): string[];
  close(): Promise<void>;
}

/** Timings a test shortens; the defaults are the deployment's. */
export interface ControllerOptions {
  /** The serving certificate's lifetime (default 30 days) and the shortest wait before its re-issue (default a minute). */
  readonly servingTtlMs?: number;
  readonly servingMinRefreshMs?: number;
  /** The first retry of a refused root ConfigMap publish (default 1 s, doubling up to a minute). */
  readonly rootRetryBaseMs?: number;
  /** How long a connection past its age may finish its calls before it is closed (default 10 s, as istiod). */
  readonly connectionAgeGraceMs?: number;
}

export async function startController(config: ControllerConfig, logger: Logger, options: ControllerOptions = {}): Promise<Controller> {
  logger.info({ config: { ...config, trustedNodeAccounts: config.trustedNodeAccounts.join(","), grpcAddr: formatBindAddr(config.grpcAddr), monitoringAddr: formatBindAddr(config.monitoringAddr) } }, "starting zt-controller");
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  const ca = await loadOrCreateCa({ dir: config.caCertsDir, trustDomain: config.trustDomain });
  logger.info({ dir: config.caCertsDir, generated: ca.generated }, ca.generated ? `generated a new mesh root in ${config.caCertsDir}` : `mesh CA loaded from ${config.caCertsDir}`);
  const rootPem = ca.roots().join("");

  // What is started so far, stopped in reverse if a later step fails (a port in use): no watches, timers or listeners left behind.
  const started: (() => void | Promise<void>)[] = [];
  try {
    const source = await openKubeSource({ clusterId: config.clusterId, trustDomain: config.trustDomain, nodeName: "" }, logger, registry);
    started.push(() => source.close());
    const pods = createPodIndex(() => source.discovery.objects("pods"));
    // One review per token for a few seconds: an agent's burst of certificate requests is one POST.
    const tokens = cachedTokenReviewer(createTokenReviewer(source.kc, "istio-ca"));
    const caServer = createCaServer({
      signer: ca,
      trustDomain: config.trustDomain,
      tokens,
      pods,
      trustedNodeAccounts: config.trustedNodeAccounts,
      maxTtlMs: config.maxWorkloadCertTtlMs,
      logger: logger.child({ component: "ca" }),
    });
    const xds = createXdsServer({
      store: source.store,
      registry,
      logger: logger.child({ component: "xds" }),
      authenticate: createXdsAuthenticator(tokens, config.trustedNodeAccounts),
    });

    started.push(() => xds.close());
    const names = {
      dns: [`${config.serviceName}.${config.podNamespace}.svc`, `${config.serviceName}.${config.podNamespace}.svc.cluster.local`, config.serviceName],
      ips: config.grpcAddr.ip === "0.0.0.0" || config.grpcAddr.ip === "::" ? [] : [config.grpcAddr.ip],
    };
    const serving = await startServingCert(ca, names, options.servingTtlMs ?? SERVING_TTL_MS, logger.child({ component: "serving-cert" }), options.servingMinRefreshMs === undefined ? {} : { minRefreshMs: options.servingMinRefreshMs });
    started.push(() => serving.close());
    const server = new grpc.Server(grpcServerOptions(config.maxServerConnectionAgeMs, options.connectionAgeGraceMs));
    server.addService(CA_SERVICE, caServer.implementation);
    server.addService(ADS_SERVICE, xds.implementation);
    const grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(formatBindAddr(config.grpcAddr), serving.credentials, (err, port) => (err ? reject(new Error(`cannot listen on GRPC_ADDR ${formatBindAddr(config.grpcAddr)}: ${err.message}`)) : resolve(port))),
    );
    started.push(() => server.forceShutdown());
    const grpcAddress = formatBindAddr({ ip: config.grpcAddr.ip, port: grpcPort });
    logger.info({ address: grpcAddress, names: names.dns }, `serving the CA and delta xDS on ${grpcAddress} (TLS, as ${names.dns[0]})`);

    let root: RootPublisher | undefined;
    if (config.publishRootCert) root = await publishRoot(source.kc, config.podNamespace, rootPem, logger.child({ component: "root" }), options.rootRetryBaseMs === undefined ? {} : { retryBaseMs: options.rootRetryBaseMs });

    started.push(() => root?.close());
    const pending = (): string[] => [...(source.pending?.() ?? []), ...(root && !root.status().published ? [`ConfigMap ${config.podNamespace}/istio-ca-root-cert not published yet`] : [])];
    const monitoring = createMonitoringServer({
      registry,
      pending,
      status: () => ({ version: CONTROLLER_VERSION, source: source.dump(), ca: caServer.stats(), xds: { ...xds.stats(), clients: xds.clients() }, root: root?.status() ?? { published: false, disabled: true }, servingCert: { names: names.dns, expires: serving.expires(), serial: serving.serial() } }),
    });
    const monitoringAddress = await listenHttp(monitoring, config.monitoringAddr);
    logger.info({ address: monitoringAddress }, `monitoring on ${monitoringAddress}: /ready, /metrics, /debug/status`);

    return {
      grpcAddress,
      monitoringAddress,
      rootPem,
      pending,
      async close() {
        root?.close();
        serving.close();
        xds.close();
        source.close();
        await shutdownGrpc(server, SHUTDOWN_GRACE_MS);
        await new Promise<void>((r) => monitoring.close(() => r()));
        logger.info("zt-controller stopped");
      },
    };
  } catch (err) {
    for (const stop of started.reverse()) await stop();
    throw err;
  }
}

/**
 * The gRPC server's limits: streams per connection (grpc-js has none by default), the
 * largest request taken (4 MiB, set rather than left to the library's default), and, as
 * istiod, a connection age: past it (±10%, grpc-js's jitter) the connection is told GOAWAY,
 * its calls get `graceMs` to finish, then it is closed; the agents reconnect (an xDS stream
 * resumes from the versions it holds) and so spread over the replicas.
 */
export function grpcServerOptions(maxConnectionAgeMs: number, graceMs = 10_000): grpc.ServerOptions {
  return {
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
    "grpc.max_concurrent_streams": 100,
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.max_connection_age_ms": maxConnectionAgeMs,
    "grpc.max_connection_age_grace_ms": graceMs,
  };
}

/** How long close() lets calls finish before cutting them. */
const SHUTDOWN_GRACE_MS = 2_000;

/** A graceful shutdown that cannot hang: what has not finished within `graceMs` is cut. */
export async function shutdownGrpc(server: grpc.Server, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([new Promise<void>((r) => server.tryShutdown(() => r())), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  server.forceShutdown();
}

function listenHttp(server: http.Server, addr: { ip: string; port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`cannot listen on MONITORING_ADDR ${formatBindAddr(addr)}: ${err.message}`)));
    server.listen(addr.port, addr.ip, () => resolve(formatBindAddr({ ip: addr.ip, port: (server.address() as { port: number }).port })));
  });
}
