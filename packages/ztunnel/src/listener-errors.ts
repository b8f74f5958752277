/**
 * A permanent 'error' handler for every listening server. After listen(), Node reports
 * accept failures (EMFILE/ENFILE when descriptors run out, ENOBUFS, ...) as 'error' on the
 * server and keeps listening; without a handler that event would crash the agent. Each
 * error is counted; the log gets one line per listener at most every 10 s, with the
 * number of errors left out since the last line.
 */
import type net from "node:net";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

const LOG_EVERY_MS = 10_000;

export function createListenerErrors(registry: Registry, logger: Logger): (server: net.Server, name: string) => void {
  const log = logger.child({ component: "listeners" });
  const errors = new Counter({
    name: "ztunnel_listener_errors_total",
    help: "Errors reported by a listening socket after it was bound (e.g. accept failing with EMFILE)",
    labelNames: ["listener", "code"],
    registers: [registry],
  });
  return (server, name) => {
    let lastLogMs = -Infinity;
    let unlogged = 0;
    server.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "UNKNOWN";
      errors.labels(name, code).inc();
      const now = Date.now();
      if (now - lastLogMs < LOG_EVERY_MS) {
        unlogged++;
        return;
      }
      const hint = code === "EMFILE" || code === "ENFILE" ? ": out of file descriptors; the listener keeps going and accepts again when some are free" : "; the listener keeps going";
      log.error({ listener: name, code, unlogged }, `${name} listener error (${code}) ${err.message}${hint}`);
      lastLogMs = now;
      unlogged = 0;
    });
  };
}
