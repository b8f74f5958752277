/**
 * Limits of the control ports — admin (15000), stats (15020), readiness (15021) — in one
 * place. Readiness and stats bind the wildcard, so anyone who reaches the node can open
 * connections to them: each listener holds at most `maxConnections` (a connection over
 * the cap is closed at once and counted), and a connection that does not finish its
 * request headers in time, or idles after a response, is closed by the server.
 * Node checks the header and request deadlines on one shared timer per server
 * (`checkIntervalMs`), not one timer per connection.
 */
import type http from "node:http";
import { Counter, type Registry } from "prom-client";

export const CONTROL_LIMITS = {
  /** Connections one control listener holds at once; more are closed on accept. */
  maxConnections: 100,
  /** From connect (or the end of the previous response) to the end of the request headers. */
  headersTimeoutMs: 5_000,
  /** From connect to the whole request received. */
  requestTimeoutMs: 10_000,
  /** Idle keep-alive connection after a response. */
  keepAliveTimeoutMs: 5_000,
  /** How often the server checks the header and request deadlines. */
  checkIntervalMs: 1_000,
} as const;

export type ControlListener = "admin" | "stats" | "readiness";

/** Server options of every control server: the deadlines of CONTROL_LIMITS. */
export const CONTROL_SERVER_OPTIONS: http.ServerOptions = {
  headersTimeout: CONTROL_LIMITS.headersTimeoutMs,
  requestTimeout: CONTROL_LIMITS.requestTimeoutMs,
  keepAliveTimeout: CONTROL_LIMITS.keepAliveTimeoutMs,
  connectionsCheckingInterval: CONTROL_LIMITS.checkIntervalMs,
};

/** Caps a control server's connections (before it listens) and counts what it drops. */
export function createControlLimits(registry: Registry): (server: http.Server, name: ControlListener) => void {
  const dropped = new Counter({
    name: "ztunnel_control_connections_dropped_total",
    help: `Connections to a control port (admin, stats, readiness) closed on accept because the listener held ${CONTROL_LIMITS.maxConnections} already`,
    labelNames: ["listener"],
    registers: [registry],
  });
  return (server, name) => {
    server.maxConnections = CONTROL_LIMITS.maxConnections;
    const counter = dropped.labels(name);
    server.on("drop", () => counter.inc());
  };
}
