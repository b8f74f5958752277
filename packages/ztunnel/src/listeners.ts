/**
 * The control listeners of the main thread: readiness (15021), admin (15000) and stats
 * (15020). The data path's listeners belong to the workers (data-path.ts).
 */
import type http from "node:http";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { createAdminServer, type AdminDeps } from "./admin.js";
import type { ConnectionSource } from "./admin-connections.js";
import type { Config } from "./config.js";
import { createControlLimits, type ControlListener } from "./control-limits.js";
import { addrOf, closeServer, listen } from "./listen.js";
import { createListenerErrors } from "./listener-errors.js";
import { createReadinessServer } from "./readiness.js";
import { createStatsServer } from "./stats.js";

export interface ControlListeners {
  addresses(): Record<string, string[]>;
  /** Close admin, stats and readiness (at the end, or when a successor takes them over). */
  closeAdmin(): Promise<void>;
  /** Bind again whichever of admin, stats and readiness is closed (the successor went away). */
  retakeAdmin(): Promise<void>;
}

export interface ControlDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  /** What readiness still waits for; empty when ready. */
  readonly pending: () => Promise<string[]>;
  readonly metrics: () => Promise<string>;
  readonly configDump: () => Promise<unknown>;
  readonly summary: () => Promise<unknown>;
  readonly explain: AdminDeps["explain"];
  /** `/debug/status`. */
  readonly status: () => Promise<unknown>;
  /** The workers' connections, for `/debug/connections`. */
  readonly connections: ConnectionSource;
  readonly setLogLevel: (level: string) => void;
  readonly isLocalAddress: (ip: string) => boolean;
  readonly shutdown: () => void;
}

/** Bind readiness, admin and stats; a failed bind rejects naming the address and variable. */
export async function startControlListeners(d: ControlDeps): Promise<ControlListeners> {
  const { config, logger } = d;
  const keepErrors = createListenerErrors(d.registry, logger);
  const limitControl = createControlLimits(d.registry);
  const control = new Map<http.Server, [string, { ip: string; port: number }, string]>();
  const add = async (name: ControlListener, server: http.Server, addr: { ip: string; port: number }, env: string): Promise<void> => {
    limitControl(server, name);
    control.set(server, [name, addr, env]);
    await listen(server, addr, { env });
    keepErrors(server, name);
  };
  await add("readiness", createReadinessServer({ pending: d.pending }), config.readinessAddr, "READINESS_ADDR");
  const admin = createAdminServer({
    configDump: d.configDump,
    logger,
    setLogLevel: d.setLogLevel,
    getLogLevel: () => logger.level,
    shutdown: d.shutdown,
    summary: d.summary,
    explain: d.explain,
    status: d.status,
    connections: d.connections,
    nodeName: config.nodeName,
    origin: { adminIp: config.adminAddr.ip, isLocalAddress: d.isLocalAddress },
  });
  await add("admin", admin, config.adminAddr, "ADMIN_ADDR");
  await add("stats", createStatsServer(d.metrics), config.statsAddr, "STATS_ADDR");
  return {
    addresses() {
      const out: Record<string, string[]> = {};
      for (const [s, [name]] of control) if (s.listening) out[name] = [addrOf(s)];
      return out;
    },
    async closeAdmin() {
      for (const s of control.keys()) s.closeAllConnections();
      await Promise.all([...control.keys()].map(closeServer));
    },
    async retakeAdmin() {
      for (const [s, [, addr, env]] of control) if (!s.listening) await listen(s, addr, { env });
    },
  };
}
