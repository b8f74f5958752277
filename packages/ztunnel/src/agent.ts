import { rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { AggregatorRegistry, collectDefaultMetrics, Registry } from "prom-client";
import { createCertManager, type CertManager } from "@zt/identity";
import { explain, FD_BUDGET_SLOTS } from "@zt/proxy";
import { workloadIdentity, type MeshStore } from "@zt/state";
import type { Config } from "./config.js";
import { describeConfig } from "./config.js";
import { createConfigDump } from "./config-dump.js";
import { HBONE_PORT, ownPorts } from "./data-path.js";
import { closeServer, listen } from "./listen.js";
import { startControlListeners } from "./listeners.js";
import { createLocalAddresses } from "./local-addresses.js";
import { sockopt } from "@zt/sockopt";
import { createFaults } from "./faults.js";
import { planFds } from "./fd-limit.js";
import { createRedirect, type Redirect } from "./redirect.js";
import { createStatus } from "./status.js";
import { startWorkers, type Workers } from "./workers/workers.js";
import { openKubeSource } from "./kube-source.js";
import { openWorkloadSource } from "./workload-source.js";
import { openXdsSource } from "./xds-source.js";
import { openCaSource, type CaSource } from "./ca-source.js";

/** The embedded default workload file, used when LOCAL_XDS_PATH is not set. */
export const EMBEDDED_WORKLOADS = fileURLToPath(new URL("../assets/local-workloads.yaml", import.meta.url));

export const VERSION = "0.1.0";

export interface Agent {
  readonly config: Config;
  readonly store: MeshStore;
  readonly certs: CertManager;
  readonly registry: Registry;
  /** Bound addresses by listener name (useful when ports were 0). */
  addresses(): Record<string, string[]>;
  /** Stop accepting, GOAWAY peers, let streams finish within DRAIN_TIMEOUT, then close everything. */
  shutdown(reason: string): Promise<void>;
  readonly closed: Promise<void>;
}

/** Readiness turns 503 when the data path holds this share of its descriptors. */
const FD_PRESSURE = 0.9;

/**
 * Start one agent. This (main) thread holds discovery, certificates, the node rules and the
 * control ports; ZTUNNEL_WORKER_THREADS workers carry the traffic. Rejects with a named
 * error on bad input.
 */
export async function startAgent(config: Config, logger: Logger, env: Record<string, string | undefined> = process.env): Promise<Agent> {
  logger.info({ config: describeConfig(config) }, "starting ztunnel");
  // One left by a crashed predecessor of this container (its /tmp survives a restart) would pass the startup probe now.
  if (config.startedFile) rmSync(config.startedFile, { force: true });
  const registry = new Registry();
  // process_* and nodejs_* (resident memory, heap, open fds, event-loop delay): what an operator checks first under load.
  // The event-loop monitor samples every 100 ms, not prom-client's 10 ms: an idle agent stays idle.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  const source =
    config.discovery === "kubernetes"
      ? await openKubeSource(config, logger, registry)
      : config.discovery === "xds"
        ? await openXdsSource(config, logger)
        : await openWorkloadSource(config, config.localXdsPath ?? EMBEDDED_WORKLOADS, logger, registry);
  const store = source.store;
  const faults = createFaults(logger, registry);
  const localAddresses = createLocalAddresses(faults.report);
  // Several workers bind each listener beside each other: SO_REUSEPORT, which needs the addon.
  let workerCount = config.workerThreads;
  if (workerCount > 1 && !sockopt.available) {
    logger.warn({ workers: workerCount }, `ZTUNNEL_WORKER_THREADS=${workerCount} needs SO_REUSEPORT from the socket-option addon, and ${sockopt.reason}: running 1 worker`);
    workerCount = 1;
  }
  let redirect: Redirect;
  try {
    redirect = createRedirect(config, store, logger);
    // Early, so that the node's running agent hands over its control ports before we bind ours.
    await redirect.announce();
  } catch (err) {
    localAddresses.close();
    source.close();
    throw err;
  }

  let ca: CaSource;
  try {
    ca = await openCaSource(config, logger);
  } catch (err) {
    localAddresses.close();
    source.close();
    await redirect.stop();
    throw err;
  }
  let workers: Workers | undefined;
  const certs = createCertManager({
    source: ca.source,
    ttlMs: config.secretTtlMs,
    onEvent: (e) => {
      if (e.type === "failed") logger.error({ identity: e.identity, err: e.error }, "certificate issuance failed; retrying");
      else logger.info({ identity: e.identity, rotatesAt: e.rotatesAt?.toISOString() }, `certificate ${e.type}`);
      const c = e.type === "failed" ? undefined : certs.get(e.identity);
      if (c) workers?.certChanged(c);
    },
  });
  const wantCerts = (): void => {
    const ids = new Set<string>();
    for (const w of store.workloadsOnNode(config.nodeName)) if (w.protocol === "HBONE") ids.add(workloadIdentity(w));
    certs.setWanted(ids);
  };
  wantCerts();
  store.onChange(wantCerts);

  const fdCounters = new SharedArrayBuffer(FD_BUDGET_SLOTS * 4);
  const fdPlan = planFds(undefined, new Int32Array(fdCounters));
  logger.info({ openFilesLimit: fdPlan.limit ?? "unknown", dataPathDescriptors: fdPlan.budget.stats().capacity, reserve: fdPlan.reserve, workers: workerCount }, "descriptor budget");
  if (workerCount > 1 && config.redirectMode === "none") await guardExclusive(config);
  try {
    workers = await startWorkers({
      count: workerCount,
      env,
      store,
      certs,
      logger,
      registry,
      receiveBytes: config.hboneBufferBudget,
      shared: workerCount > 1,
      fdCounters,
      logLevel: () => logger.level,
    });
  } catch (err) {
    certs.close();
    ca.close();
    localAddresses.close();
    source.close();
    await redirect.stop();
    throw err;
  }
  const running = workers;

  let draining = false;
  let shuttingDown: Promise<void> | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const dataPath = async (): Promise<unknown> => {
    const each = await running.stats();
    return {
      descriptors: { ...fdPlan.budget.stats(), limit: fdPlan.limit ?? null, reserve: fdPlan.reserve },
      hbone: { ...sum(each.map((e) => e.receiveBudget)), pool: sum(each.map((e) => e.pool)), inbound: sum(each.map((e) => e.inbound)) },
      peers: sumByKey(each.map((e) => e.peers)),
      workers: each.map((e) => ({ worker: e.worker, live: e.live, open: e.open, pool: e.pool, inbound: e.inbound })),
    };
  };
  const configDump = createConfigDump({ config, store, certs, version: VERSION, capture: redirect.dump, source, dataPath });
  const pending = async (): Promise<string[]> => {
    const waiting = certs.pending();
    // Why, when an attempt failed (a remote CA down, refusing us): the operator's first question.
    const failed = waiting.length === 0 ? new Map() : new Map(certs.dump().flatMap((d) => (d.lastError ? [[d.identity, d.lastError] as const] : [])));
    const p = waiting.map((id) => {
      const e = failed.get(id);
      return `certificate ${id}${e ? ` (${e.code}: ${e.message})` : ""}`;
    });
    p.push(...(await running.pending()));
    p.push(...redirect.pending());
    p.push(...(source.pending?.() ?? []));
    if (draining) p.push("draining");
    const fds = fdPlan.budget.stats();
    if (fds.inUse >= fds.capacity * FD_PRESSURE) p.push(`descriptor pressure: the data path holds ${fds.inUse} of the ${fds.capacity} descriptors it may use; new connections are being refused`);
    return p;
  };
  const status = createStatus({
    nodeName: config.nodeName,
    version: VERSION,
    store,
    certs,
    pending,
    draining: () => draining,
    source,
    capture: redirect.dump,
    dataPath: () => running.stats(),
  });
  const metrics = async (): Promise<string> => AggregatorRegistry.aggregate([await registry.getMetricsAsJSON(), ...(await running.metrics())]).metrics();
  const explainContext = {
    nodeName: config.nodeName,
    trustDomain: config.trustDomain,
    outboundPolicy: config.outboundTrafficPolicy,
    hbonePort: HBONE_PORT,
    ownPorts: ownPorts(config),
    isLocalAddress: localAddresses.has,
    store,
    onFault: faults.report,
  };
  const control = await startControlListeners({
    config,
    logger,
    registry,
    pending,
    metrics,
    configDump,
    summary: async () => {
      const each = await running.stats();
      return { node: config.nodeName, workloads: store.counts().workloads, workers: each.length, live: running.live(), pool: sum(each.map((e) => e.pool)) };
    },
    status,
    connections: { workers: () => running.count(), page: (worker, req) => running.connections(worker, req) },
    setLogLevel: (level) => {
      logger.level = level;
      running.setLogLevel(level);
    },
    isLocalAddress: localAddresses.has,
    // On the main thread, from its copy of the mesh: the workers route and admit with the same functions.
    explain: (q) => explain(explainContext, q),
    shutdown: () => void agent.shutdown("admin /quitquitquit"),
  });
  redirect.attachControl({ release: () => control.closeAdmin(), retake: () => control.retakeAdmin() });

  const agent: Agent = {
    config,
    store,
    certs,
    registry,
    closed,
    addresses: () => ({ ...running.addresses(), ...control.addresses() }),
    shutdown(reason) {
      shuttingDown ??= (async () => {
        logger.info({ reason, drainTimeoutMs: config.drainTimeoutMs, live: running.live() }, "draining");
        if (config.startedFile) rmSync(config.startedFile, { force: true });
        draining = true;
        redirect.markDraining();
        await running.drain(config.drainTimeoutMs);
        source.close();
        certs.close();
        ca.close();
        localAddresses.close();
        await redirect.stop();
        faults.uninstall();
        await control.closeAdmin();
        logger.info("ztunnel stopped");
        resolveClosed();
      })();
      return shuttingDown;
    },
  };
  faults.install();
  await redirect.start();
  logger.info({ addresses: agent.addresses() }, "ztunnel ready to accept");
  if (config.startedFile) writeStartedFile(config.startedFile, logger);
  return agent;
}

/** Per key (a peer identity), what every worker holds for it, added up. */
function sumByKey(xs: readonly Record<string, unknown>[]): Record<string, Record<string, number>> {
  const groups = new Map<string, unknown[]>();
  for (const x of xs) for (const [k, v] of Object.entries(x)) groups.set(k, [...(groups.get(k) ?? []), v]);
  return Object.fromEntries([...groups].map(([k, vs]) => [k, sum(vs)]));
}

/** Numeric fields added up across workers (what each holds, in all). */
function sum(xs: readonly unknown[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) for (const [k, v] of Object.entries((x ?? {}) as Record<string, unknown>)) if (typeof v === "number") out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * Without capture a second agent on the same addresses must fail (EADDRINUSE), as it does
 * with one worker; SO_REUSEPORT listeners would share them silently. So each address is
 * first bound exclusively, once, and let go before the workers bind it together.
 */
async function guardExclusive(config: Config): Promise<void> {
  const addrs: [{ ip: string; port: number }, string][] = [
    [config.outboundAddr, "OUTBOUND_ADDR"],
    [config.inboundPlaintextAddr, "INBOUND_PLAINTEXT_ADDR"],
    [config.socks5Addr, "SOCKS5_ADDR"],
  ];
  if (config.inboundAddr.kind === "addr") addrs.push([config.inboundAddr, "INBOUND_ADDR"]);
  for (const [addr, env] of addrs) {
    if (addr.port === 0) continue;
    const probe = net.createServer();
    await listen(probe, addr, { env });
    await closeServer(probe);
  }
}

/** The started marker (STARTED_FILE). Failing to write it is logged: the startup probe then keeps the pod unready. */
function writeStartedFile(file: string, logger: Logger): void {
  try {
    writeFileSync(file, `${process.pid}\n`);
  } catch (err) {
    logger.error({ err, file }, `cannot write STARTED_FILE ${file}: ${(err as Error).message}`);
  }
}

