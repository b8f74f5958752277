/**
 * Limits of the control ports — admin (15000), stats (15020), readiness (15021) — in one
 * place. Readiness and stats bind the wildcard, so anyone who reaches the node can open
 * connections to them: each listener holds at most `maxConnections`. A connection over the
 * cap makes room by closing the oldest held connection that has no request in progress
 * (idle, or still sending its headers), so a flood cannot lock the kubelet or Prometheus
 * out; when every held connection is busy, the new one is closed. Either way one
 * connection is closed at once and counted. A connection that does not finish its request
 * headers in time, or idles after a response, is closed by the server.
 * Node checks the header and request deadlines on one shared timer per server
 * (`checkIntervalMs`), not one timer per connection.
 */
import type http from "node:http";
import type net from "node:net";
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

/** Caps a control server's connections (before it listens) and counts what it closes for the cap. */
export function createControlLimits(registry: Registry): (server: http.Server, name: ControlListener) => void {
  const dropped = new Counter({
    name: "ztunnel_control_connections_dropped_total",
    help: `Connections to a control port (admin, stats, readiness) closed because the listener held ${CONTROL_LIMITS.maxConnections}: reason "evicted" (the oldest one without a request in progress, to make room) or "full" (the new one: every held one was busy)`,
    labelNames: ["listener", "reason"],
    registers: [registry],
  });
  return (server, name) => {
    const evicted = dropped.labels(name, "evicted");
    const full = dropped.labels(name, "full");
    const held = new Set<net.Socket>(); // oldest first
    const busy = new Set<net.Socket>(); // from a request to the end of its response
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      busy.add(req.socket);
      res.once("close", () => busy.delete(req.socket));
    });
    server.on("connection", (socket: net.Socket) => {
      held.add(socket);
      socket.once("close", () => (held.delete(socket), busy.delete(socket)));
      if (held.size <= CONTROL_LIMITS.maxConnections) return;
      for (const s of held) {
        if (s === socket || busy.has(s)) continue;
        held.delete(s);
        s.destroy();
        evicted.inc();
        return;
      }
      held.delete(socket);
      socket.destroy();
      full.inc();
    });
  };
}
