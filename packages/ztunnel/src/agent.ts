import { rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { collectDefaultMetrics, Registry } from "prom-client";
import { createCertManager, loadOrCreateCa, type CertManager } from "@zt/identity";
import { createHbonePool, createReceiveBudget, type ProxyContext } from "@zt/proxy";
import { workloadIdentity, type MeshStore } from "@zt/state";
import type { Config } from "./config.js";
import { describeConfig } from "./config.js";
import { createConfigDump } from "./config-dump.js";
import { startListeners, type Listeners } from "./listeners.js";
import { createLocalAddresses } from "./local-addresses.js";
import { setLingerReset, sockopt } from "@zt/sockopt";
import { createFaults } from "./faults.js";
import { createMemoryReducer } from "./memory-reducer.js";
import { planFds } from "./fd-limit.js";
import { createRedirect, type Redirect } from "./redirect.js";
import { createTelemetry } from "./telemetry.js";
import { openKubeSource } from "./kube-source.js";
import { openWorkloadSource } from "./workload-source.js";

/** The embedded default workload file, used when LOCAL_XDS_PATH is not set. */
export const EMBEDDED_WORKLOADS = fileURLToPath(new URL("../assets/local-workloads.yaml", import.meta.url));

export const VERSION = "0.1.0";

export interface Agent {
  readonly config: Config;
  readonly store: MeshStore;
  readonly certs: CertManager;
  readonly ctx: ProxyContext;
  readonly listeners: Listeners;
  readonly registry: Registry;
  /** Bound addresses by listener name (useful when ports were 0). */
  addresses(): Record<string, string[]>;
  /** Stop accepting, GOAWAY peers, let streams finish within DRAIN_TIMEOUT, then close everything. */
  shutdown(reason: string): Promise<void>;
  readonly closed: Promise<void>;
}

/** Start one agent: state, certificates, listeners, admin. Rejects with a named error on bad input. */
export async function startAgent(config: Config, logger: Logger): Promise<Agent> {
  logger.info({ config: describeConfig(config) }, "starting ztunnel");
  // One left by a crashed predecessor of this container (its /tmp survives a restart) would pass the startup probe now.
  if (config.startedFile) rmSync(config.startedFile, { force: true });
  const registry = new Registry();
  // process_* and nodejs_* (resident memory, heap, open fds, event-loop delay): what an operator checks first under load.
  // The event-loop monitor samples every 100 ms, not prom-client's 10 ms: an idle agent stays idle.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  const source =
    config.discovery === "kubernetes" ? await openKubeSource(config, logger, registry) : await openWorkloadSource(config, config.localXdsPath ?? EMBEDDED_WORKLOADS, logger, registry);
  const store = source.store;
  const faults = createFaults(logger, registry);
  const localAddresses = createLocalAddresses(faults.report);
  let redirect: Redirect;
  try {
    redirect = createRedirect(config, store, localAddresses.has, logger);
    // Early, so that the node's running agent hands over its control ports before we bind ours.
    await redirect.announce();
  } catch (err) {
    localAddresses.close();
    source.close();
    throw err;
  }

  const ca = await loadOrCreateCa({ dir: config.caCertsDir, trustDomain: config.trustDomain });
  const certs = createCertManager({
    source: ca,
    ttlMs: config.secretTtlMs,
    onEvent: (e) => {
      if (e.type === "failed") logger.error({ identity: e.identity, err: e.error }, "certificate issuance failed; retrying");
      else logger.info({ identity: e.identity, rotatesAt: e.rotatesAt?.toISOString() }, `certificate ${e.type}`);
    },
  });
  const wantCerts = (): void => {
    const ids = new Set<string>();
    for (const w of store.workloadsOnNode(config.nodeName)) if (w.protocol === "HBONE") ids.add(workloadIdentity(w));
    certs.setWanted(ids);
  };
  wantCerts();
  store.onChange(wantCerts);

  const observer = createTelemetry({ registry, logger });
  const fdPlan = planFds();
  logger.info({ openFilesLimit: fdPlan.limit ?? "unknown", dataPathDescriptors: fdPlan.budget.stats().capacity, reserve: fdPlan.reserve }, "descriptor budget");
  const receiveBudget = createReceiveBudget({ streamWindow: config.http2StreamWindowSize, sessionBytes: config.http2ConnectionWindowSize, totalBytes: config.hboneBufferBudget });
  const pool = createHbonePool({
    receiveBudget,
    fds: fdPlan.budget,
    certs,
    logger,
    maxStreamsPerConnection: config.poolMaxStreamsPerConnection,
    idleTimeoutMs: config.poolUnusedReleaseTimeoutMs,
    streamWindowSize: config.http2StreamWindowSize,
    connectionWindowSize: config.http2ConnectionWindowSize,
    pingIntervalMs: config.hboneKeepaliveIntervalMs,
    pingTimeoutMs: config.hboneKeepaliveTimeoutMs,
    dialer: redirect.dialer,
    onFault: faults.report,
  });
  const ctx: ProxyContext = {
    nodeName: config.nodeName,
    trustDomain: config.trustDomain,
    outboundPolicy: config.outboundTrafficPolicy,
    hbonePort: 15008,
    ownPorts: ownPorts(config),
    isLocalAddress: localAddresses.has,
    store,
    certs,
    pool,
    observer,
    logger,
    streamWindowSize: config.http2StreamWindowSize,
    connectionWindowSize: config.http2ConnectionWindowSize,
    connectTimeoutMs: 10_000,
    dialer: redirect.upstreamDialer,
    live: new Set(),
    receiveBudget,
    fds: fdPlan.budget,
    onFault: faults.report,
    ...(sockopt.available ? { lingerReset: setLingerReset } : {}),
  };

  const memoryReducer = createMemoryReducer(() => ctx.live.size);
  let shuttingDown: Promise<void> | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const dataPath = (): unknown => ({
    descriptors: { ...ctx.fds.stats(), limit: fdPlan.limit ?? null, reserve: fdPlan.reserve },
    hbone: { ...ctx.receiveBudget.stats(), pool: pool.stats(), inbound: listeners.inbound.stats() },
    peers: Object.fromEntries(listeners.inbound.limits.usage()),
  });
  const configDump = createConfigDump({ config, store, certs, version: VERSION, capture: redirect.dump, source, dataPath });
  const listeners = await startListeners({
    config,
    ctx,
    logger,
    registry,
    configDump,
    redirect,
    shutdown: () => void agent.shutdown("admin /quitquitquit"),
    ...(source.pending ? { discoveryPending: () => source.pending!() } : {}),
  });
  redirect.attachControl({ release: () => listeners.closeAdmin(), retake: () => listeners.retakeAdmin() });

  const agent: Agent = {
    config,
    store,
    certs,
    ctx,
    listeners,
    registry,
    closed,
    addresses: () => listeners.addresses(),
    shutdown(reason) {
      shuttingDown ??= (async () => {
        logger.info({ reason, drainTimeoutMs: config.drainTimeoutMs, live: ctx.live.size }, "draining");
        if (config.startedFile) rmSync(config.startedFile, { force: true });
        listeners.markDraining();
        redirect.markDraining();
        await listeners.stopAccepting();
        listeners.inbound.drain();
        pool.drain();
        await waitForDrain(() => ctx.live.size + listeners.openConnections(), config.drainTimeoutMs);
        const open = listeners.openConnections();
        if (ctx.live.size > 0 || open > 0) logger.warn({ live: ctx.live.size, open }, "drain window over; closing the remaining connections");
        for (const c of [...ctx.live]) c.destroy();
        // Each reset becomes an RST_STREAM on its HBONE session: let those reach the peers
        // before the sessions go, or a peer would see a bare FIN and keep its side open.
        await waitForDrain(() => ctx.live.size, 1000);
        await new Promise((r) => setImmediate(r));
        listeners.inbound.close();
        pool.close();
        receiveBudget.close();
        memoryReducer.close();
        source.close();
        certs.close();
        localAddresses.close();
        await redirect.stop();
        faults.uninstall();
        await listeners.closeAdmin();
        logger.info("ztunnel stopped");
        resolveClosed();
      })();
      return shuttingDown;
    },
  };
  faults.install();
  await redirect.start();
  logger.info({ addresses: listeners.addresses() }, "ztunnel ready to accept");
  if (config.startedFile) writeStartedFile(config.startedFile, logger);
  return agent;
}

/** The started marker (STARTED_FILE). Failing to write it is logged: the startup probe then keeps the pod unready. */
function writeStartedFile(file: string, logger: Logger): void {
  try {
    writeFileSync(file, `${process.pid}\n`);
  } catch (err) {
    logger.error({ err, file }, `cannot write STARTED_FILE ${file}: ${(err as Error).message}`);
  }
}

function ownPorts(c: Config): Set<number> {
  const ports = [c.adminAddr.port, c.statsAddr.port, c.readinessAddr.port, c.outboundAddr.port, c.inboundPlaintextAddr.port, c.socks5Addr.port, c.inboundAddr.port, 15008];
  return new Set(ports.filter((p) => p > 0));
}

async function waitForDrain(busy: () => number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (busy() > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

