/**
 * The data path of one thread: its HBONE pool, its inbound HBONE server and its own
 * listeners (15001, 15006, 15008 or one per local workload IP, SOCKS5), with the
 * telemetry of what it carries. A worker runs one (`worker-thread.ts`); the main thread
 * runs none and only asks the workers what they hold.
 */
import type net from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { CertManager } from "@zt/identity";
import {
  createHbonePool,
  createInboundServer,
  createOutboundServer,
  createPlaintextInboundServer,
  createProxyListener,
  createReceiveBudget,
  createSocks5Server,
  type ConnectionRecord,
  type FdBudget,
  type LiveConnection,
  type ProxyContext,
} from "@zt/proxy";
import { setLingerReset, sockopt } from "@zt/sockopt";
import type { MeshChange, MeshStore } from "@zt/state";
import type { Config } from "./config.js";
import { createConnectionPages, type ConnectionPage, type ConnectionPageRequest } from "./connection-pages.js";
import { addrOf, listen, type ListenOpts } from "./listen.js";
import { createListenerErrors } from "./listener-errors.js";
import { registerPressureMetrics } from "./pressure-metrics.js";
import type { DataPathListener, DataPathSockets } from "./sockets.js";
import { createTelemetry } from "./telemetry.js";
import { createWorkloadListeners, type WorkloadListeners } from "./workload-listeners.js";

export interface DataPathDeps {
  readonly config: Config;
  readonly store: MeshStore;
  readonly certs: CertManager;
  readonly logger: Logger;
  /** This data path's metrics (Istio's TCP metrics, listener errors, pressure gauges). */
  readonly registry: Registry;
  readonly fds: FdBudget;
  /** The per-identity HBONE caps' counts, shared by the process's workers. */
  readonly peerCounts?: Int32Array;
  /** Of HBONE_BUFFER_BUDGET, the share this data path may hold unconsumed. */
  readonly receiveBytes: number;
  readonly sockets: DataPathSockets;
  readonly isLocalAddress: (ip: string) => boolean;
  readonly onFault: (where: string, err: unknown) => void;
  /** Whether bind failures of per-workload listeners are logged here (false on every worker but the first). */
  readonly logBinds?: boolean;
  /** Called when a proxied connection opens (+1) and ends (-1): the main thread's count of what a worker holds. */
  readonly onLive?: (delta: number) => void;
}

/** What a data path holds, for /config_dump and the admin page. */
export interface DataPathStats {
  readonly live: number;
  readonly open: number;
  readonly pool: { connections: number; streams: number; keys: number };
  /** The pool's connections and streams per HBONE peer ("ip:15008"). */
  readonly poolPeers: Record<string, { connections: number; streams: number }>;
  readonly inbound: { connections: number; streams: number };
  readonly receiveBudget: unknown;
  readonly peers: Record<string, unknown>;
}

export interface DataPath {
  addresses(): Record<string, string[]>;
  /** What this data path still waits for (per-workload listeners not bound); empty when none. */
  pending(): string[];
  stats(): DataPathStats;
  /** A page of the connections open or being set up (GET /debug/connections). */
  connections(req: ConnectionPageRequest): ConnectionPage;
  /** Stop listening; live connections carry on. */
  stopAccepting(): void;
  /** GOAWAY to every peer, let streams finish within `timeoutMs`, then reset the rest and close everything. */
  drain(timeoutMs: number): Promise<void>;
}

export async function startDataPath(d: DataPathDeps): Promise<DataPath> {
  const { config, logger } = d;
  const observer = createTelemetry({ registry: d.registry, logger });
  const receiveBudget = createReceiveBudget({ streamWindow: config.http2StreamWindowSize, sessionBytes: config.http2ConnectionWindowSize, totalBytes: d.receiveBytes });
  const pool = createHbonePool({
    receiveBudget,
    fds: d.fds,
    certs: d.certs,
    logger,
    maxStreamsPerConnection: config.poolMaxStreamsPerConnection,
    idleTimeoutMs: config.poolUnusedReleaseTimeoutMs,
    streamWindowSize: config.http2StreamWindowSize,
    connectionWindowSize: config.http2ConnectionWindowSize,
    pingIntervalMs: config.hboneKeepaliveIntervalMs,
    pingTimeoutMs: config.hboneKeepaliveTimeoutMs,
    dialer: d.sockets.dialer,
    onFault: d.onFault,
  });
  const live: Set<LiveConnection> = d.onLive ? new CountingSet(d.onLive) : new Set();
  const connecting = new Set<ConnectionRecord>();
  let draining = false;
  const connectionPages = createConnectionPages(live, connecting, () => draining);
  // Policies changed (or which ones a workload names): every live inbound connection is decided again; the denied ones are reset.
  d.store.onChange((_v, change) => {
    if (!policiesMayHaveChanged(change)) return;
    for (const c of [...live]) c.reauthorize();
  });
  const ctx: ProxyContext = {
    nodeName: config.nodeName,
    trustDomain: config.trustDomain,
    outboundPolicy: config.outboundTrafficPolicy,
    hbonePort: HBONE_PORT,
    ownPorts: ownPorts(config),
    isLocalAddress: d.isLocalAddress,
    store: d.store,
    certs: d.certs,
    pool,
    observer,
    logger,
    streamWindowSize: config.http2StreamWindowSize,
    connectionWindowSize: config.http2ConnectionWindowSize,
    connectTimeoutMs: 10_000,
    dialer: d.sockets.upstreamDialer,
    live,
    connecting,
    receiveBudget,
    fds: d.fds,
    onFault: d.onFault,
    ...(sockopt.available ? { lingerReset: setLingerReset } : {}),
  };

  const bound = new Map<string, net.Server[]>();
  const keepErrors = createListenerErrors(d.registry, logger);
  let accepted = 0;
  const track = <T extends net.Server>(server: T): T =>
    server.on("connection", (sock: net.Socket) => {
      accepted++;
      sock.once("close", () => accepted--);
    });
  const add = async (name: DataPathListener, server: net.Server, addr: { ip: string; port: number }, env: string): Promise<void> => {
    await listen(server, addr, { env, ...d.sockets.listenOptions(name) });
    keepErrors(server, name);
    bound.set(name, [...(bound.get(name) ?? []), server]);
  };
  const inbound = createInboundServer(ctx, {
    pingIntervalMs: config.hboneKeepaliveIntervalMs,
    pingTimeoutMs: config.hboneKeepaliveTimeoutMs,
    idleTimeoutMs: config.hboneIdleTimeoutMs,
    limits: { maxConnectionsPerIdentity: config.hboneMaxConnectionsPerIdentity, maxStreamsPerIdentity: config.hboneMaxStreamsPerIdentity },
    ...(d.peerCounts ? { sharedPeerCounts: d.peerCounts } : {}),
  });
  const listeners: net.Server[] = [];
  let perWorkload: WorkloadListeners | undefined;
  const inboundMode = config.inboundAddr;
  if (inboundMode.kind === "workloads") {
    const listenOpts: ListenOpts = d.sockets.listenOptions("inbound");
    const wl = createWorkloadListeners({
      config,
      ctx,
      logger,
      port: inboundMode.port,
      listenOpts,
      ...(d.logBinds === false ? { logBinds: false } : {}),
      create: () => track(createProxyListener(ctx, "hbone", inbound.accept, inbound.unproven)),
      bound: (s) => keepErrors(s, "inbound"),
    });
    perWorkload = wl;
    await wl.sync();
    d.store.onChange(() => void wl.sync());
  } else {
    const s = track(createProxyListener(ctx, "hbone", inbound.accept, inbound.unproven));
    listeners.push(s);
    await add("inbound", s, inboundMode, "INBOUND_ADDR");
  }
  for (const [name, server, addr, env] of [
    ["outbound", createOutboundServer(ctx), config.outboundAddr, "OUTBOUND_ADDR"],
    ["inbound_plaintext", createPlaintextInboundServer(ctx), config.inboundPlaintextAddr, "INBOUND_PLAINTEXT_ADDR"],
    ["socks5", createSocks5Server(ctx), config.socks5Addr, "SOCKS5_ADDR"],
  ] as const) {
    listeners.push(track(server));
    await add(name, server, addr, env);
  }
  registerPressureMetrics(d.registry, ctx, inbound);

  const stopAccepting = (): void => {
    // Connections already accepted are drained by their owners: close() callbacks fire only when every one is gone.
    for (const s of listeners) if (s.listening) s.close();
    perWorkload?.close();
  };
  return {
    addresses() {
      const out: Record<string, string[]> = {};
      for (const [name, servers] of bound) out[name] = servers.map(addrOf);
      out["inbound"] = [...(out["inbound"] ?? []), ...(perWorkload?.servers() ?? []).map(addrOf).filter((a) => a !== "")];
      return out;
    },
    pending: () => perWorkload?.pending() ?? [],
    stats: () => ({
      live: live.size,
      open: accepted,
      pool: pool.stats(),
      poolPeers: pool.peers(),
      inbound: inbound.stats(),
      receiveBudget: receiveBudget.stats(),
      peers: Object.fromEntries(inbound.limits.usage()),
    }),
    connections: connectionPages,
    stopAccepting,
    async drain(timeoutMs) {
      draining = true;
      stopAccepting();
      inbound.drain();
      pool.drain();
      await waitFor(() => live.size + accepted, timeoutMs);
      if (live.size > 0 || accepted > 0) logger.warn({ live: live.size, open: accepted }, "drain window over; closing the remaining connections");
      for (const c of [...live]) c.destroy();
      // Each reset becomes an RST_STREAM on its HBONE session: let those reach the peers
      // before the sessions go, or a peer would see a bare FIN and keep its side open.
      await waitFor(() => live.size, 1000);
      await new Promise((r) => setImmediate(r));
      inbound.close();
      pool.close();
      receiveBudget.close();
    },
  };
}

/** The live set, telling the main thread of each connection that opens and ends. */
class CountingSet<T> extends Set<T> {
  constructor(private readonly onLive: (delta: number) => void) {
    super();
  }
  override add(v: T): this {
    if (!this.has(v)) this.onLive(1);
    return super.add(v);
  }
  override delete(v: T): boolean {
    const had = super.delete(v);
    if (had) this.onLive(-1);
    return had;
  }
}

/** Port HBONE peers listen on. */
export const HBONE_PORT = 15008;

/** The agent's own ports: never a destination (loop protection). */
export function ownPorts(c: Config): Set<number> {
  const ports = [c.adminAddr.port, c.statsAddr.port, c.readinessAddr.port, c.outboundAddr.port, c.inboundPlaintextAddr.port, c.socks5Addr.port, c.inboundAddr.port, 15008];
  return new Set(ports.filter((p) => p > 0));
}

async function waitFor(busy: () => number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (busy() > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A replace, new policies, or workloads that name their policies (delta xDS): what can change an inbound connection's verdict. */
function policiesMayHaveChanged(change: MeshChange): boolean {
  if (change.kind === "replace") return true;
  const d = change.delta;
  return d.policies !== undefined || (d.workloads ?? []).some((w) => w.authorizationPolicies !== undefined);
}
