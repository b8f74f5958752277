import type http from "node:http";
import type net from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import {
  createInboundServer,
  createOutboundServer,
  createPlaintextInboundServer,
  createProxyListener,
  createSocks5Server,
  type InboundServer,
  type ProxyContext,
} from "@zt/proxy";
import { formatHostPort } from "@zt/state";
import { createAdminServer } from "./admin.js";
import type { Config } from "./config.js";
import { createControlLimits } from "./control-limits.js";
import { listen, type ListenOpts } from "./listen.js";
import { createListenerErrors } from "./listener-errors.js";
import type { Redirect } from "./redirect.js";
import { createReadinessServer } from "./readiness.js";
import { registerPressureMetrics } from "./pressure-metrics.js";
import { createStatsServer } from "./stats.js";
import { createWorkloadListeners, type WorkloadListeners } from "./workload-listeners.js";

/** Readiness turns 503 when the data path holds this share of its descriptors. */
const FD_PRESSURE = 0.9;

export interface Listeners {
  readonly inbound: InboundServer;
  addresses(): Record<string, string[]>;
  /** What readiness still waits for; empty when ready. */
  pending(): string[];
  markDraining(): void;
  /** Close the data-path listeners (no new connections); live ones carry on. */
  stopAccepting(): Promise<void>;
  /**
   * Data-path connections accepted and not closed yet, those still being set up included
   * (a drain that only waited for relayed ones would cut these off).
   */
  openConnections(): number;
  /** Close admin, stats and readiness (at the end, or when a successor takes them over). */
  closeAdmin(): Promise<void>;
  /** Bind again whichever of admin, stats and readiness is closed (the successor went away). */
  retakeAdmin(): Promise<void>;
}

export interface ListenerDeps {
  readonly config: Config;
  readonly ctx: ProxyContext;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly configDump: () => unknown;
  readonly redirect: Redirect;
  readonly shutdown: () => void;
  /** What discovery still waits for (the first sync from the Kubernetes API). */
  readonly discoveryPending?: () => string[];
}

/** Bind every listener the config names; a failed bind rejects naming the address and variable. */
export async function startListeners(d: ListenerDeps): Promise<Listeners> {
  const { config, ctx, logger } = d;
  const bound = new Map<string, net.Server[]>();
  const keepErrors = createListenerErrors(d.registry, logger);
  const limitControl = createControlLimits(d.registry);
  const add = async (name: string, server: net.Server, addr: { ip: string; port: number }, env: string, opts: ListenOpts = {}): Promise<void> => {
    await listen(server, addr, { env, ...opts });
    keepErrors(server, name);
    bound.set(name, [...(bound.get(name) ?? []), server]);
  };
  const controlAddrs = new Map<net.Server, [{ ip: string; port: number }, string]>();
  const addControl = async (name: string, server: http.Server, addr: { ip: string; port: number }, env: string): Promise<void> => {
    control.push(server);
    controlAddrs.set(server, [addr, env]);
    await add(name, server, addr, env);
  };
  let draining = false;
  let allBound = false;
  let accepted = 0;
  const track = <T extends net.Server>(server: T): T =>
    server.on("connection", (sock: net.Socket) => {
      accepted++;
      sock.once("close", () => accepted--);
    });
  const inbound = createInboundServer(ctx, {
    pingIntervalMs: config.hboneKeepaliveIntervalMs,
    pingTimeoutMs: config.hboneKeepaliveTimeoutMs,
    idleTimeoutMs: config.hboneIdleTimeoutMs,
    limits: { maxConnectionsPerIdentity: config.hboneMaxConnectionsPerIdentity, maxStreamsPerIdentity: config.hboneMaxStreamsPerIdentity },
  });
  const dataPath: net.Server[] = [];
  const control: http.Server[] = [];

  const readiness = createReadinessServer({ pending: () => pending() });
  limitControl(readiness, "readiness");
  await addControl("readiness", readiness, config.readinessAddr, "READINESS_ADDR");

  let perWorkload: WorkloadListeners | undefined;
  const inboundMode = config.inboundAddr;
  if (inboundMode.kind === "workloads") {
    const wl = createWorkloadListeners({
      config,
      ctx,
      logger,
      port: inboundMode.port,
      create: () => track(createProxyListener(ctx, "hbone", inbound.accept, inbound.unproven)),
      bound: (s) => keepErrors(s, "inbound"),
    });
    perWorkload = wl;
    await wl.sync();
    ctx.store.onChange(() => void wl.sync());
  } else {
    const s = track(createProxyListener(ctx, "hbone", inbound.accept, inbound.unproven));
    dataPath.push(s);
    await add("inbound", s, inboundMode, "INBOUND_ADDR", d.redirect.listenOptions("inbound"));
  }
  for (const [name, server, addr, env] of [
    ["outbound", createOutboundServer(ctx), config.outboundAddr, "OUTBOUND_ADDR"],
    ["inbound_plaintext", createPlaintextInboundServer(ctx), config.inboundPlaintextAddr, "INBOUND_PLAINTEXT_ADDR"],
    ["socks5", createSocks5Server(ctx), config.socks5Addr, "SOCKS5_ADDR"],
  ] as const) {
    dataPath.push(track(server));
    await add(name, server, addr, env, d.redirect.listenOptions(name));
  }
  const admin = createAdminServer({
    configDump: d.configDump,
    logger,
    setLogLevel: (level: string) => {
      logger.level = level;
    },
    getLogLevel: () => logger.level,
    shutdown: d.shutdown,
    summary: () => ({ node: config.nodeName, workloads: ctx.store.snapshot().workloads.length, live: ctx.live.size, pool: ctx.pool.stats() }),
    origin: { adminIp: config.adminAddr.ip, isLocalAddress: ctx.isLocalAddress },
  });
  registerPressureMetrics(d.registry, ctx, inbound);
  const stats = createStatsServer(d.registry);
  limitControl(admin, "admin");
  limitControl(stats, "stats");
  await addControl("admin", admin, config.adminAddr, "ADMIN_ADDR");
  await addControl("stats", stats, config.statsAddr, "STATS_ADDR");

  allBound = true;

  function pending(): string[] {
    const p = ctx.certs.pending().map((id) => `certificate ${id}`);
    if (!allBound) p.push("listeners");
    p.push(...(perWorkload?.pending() ?? []));
    p.push(...d.redirect.pending());
    p.push(...(d.discoveryPending?.() ?? []));
    if (draining) p.push("draining");
    const fds = ctx.fds.stats();
    if (fds.inUse >= fds.capacity * FD_PRESSURE) p.push(`descriptor pressure: the data path holds ${fds.inUse} of the ${fds.capacity} descriptors it may use; new connections are being refused`);
    return p;
  }

  return {
    inbound,
    pending,
    addresses() {
      const out: Record<string, string[]> = {};
      for (const [name, servers] of bound) out[name] = servers.map(addrOf);
      out["inbound"] = [...(out["inbound"] ?? []), ...(perWorkload?.servers() ?? []).map(addrOf).filter((a) => a !== "")];
      return out;
    },
    markDraining() {
      draining = true;
    },
    openConnections: () => accepted,
    async stopAccepting() {
      // Stop listening now; connections already accepted are drained by their owners,
      // so do not wait for close() callbacks (they fire only when every connection is gone).
      for (const s of dataPath) if (s.listening) s.close();
      perWorkload?.close();
    },
    async closeAdmin() {
      for (const s of control) s.closeAllConnections();
      await Promise.all(control.map(closeServer));
    },
    async retakeAdmin() {
      for (const [s, [addr, env]] of controlAddrs) if (!s.listening) await listen(s, addr, { env });
    },
  };
}

function addrOf(s: net.Server): string {
  const a = s.address();
  return a && typeof a === "object" ? formatHostPort(a.address, a.port) : "";
}

function closeServer(s: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!s.listening) return resolve();
    s.close(() => resolve());
  });
}

