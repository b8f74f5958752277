import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

export interface Faults {
  /** Something threw where nothing could handle it: log (throttled) and count; the caller carries on. */
  report(where: string, err: unknown): void;
  /** The last resort: uncaught exceptions and unhandled rejections are reported, not fatal. */
  install(): void;
  uninstall(): void;
}

/**
 * The agent's last-resort policy. A bug in a timer or an event handler must not take the
 * node's proxy down: under capture that would black-hole every pod until a restart, and a
 * reachable throw would be a remote kill switch. So a fault is logged (one line per place
 * per second at most, with the count of the ones not logged), counted in
 * `ztunnel_internal_errors_total{where}`, and the agent carries on. It fails closed: the
 * connection being handled, if any, is reset by its own handler, a policy evaluation that
 * throws denies, and the node rules stay as they are.
 */
export function createFaults(logger: Logger, registry: Registry): Faults {
  const log = logger.child({ component: "faults" });
  const counter = new Counter({ name: "ztunnel_internal_errors_total", help: "Errors that reached a last-resort handler (the agent carried on)", labelNames: ["where"], registers: [registry] });
  const last = new Map<string, { at: number; quiet: number }>();
  const report = (where: string, err: unknown): void => {
    counter.labels({ where }).inc();
    const now = Date.now();
    const st = last.get(where) ?? { at: 0, quiet: 0 };
    last.set(where, st);
    if (now - st.at < 1000) {
      st.quiet++;
      return;
    }
    const code = where === "uncaught exception" || where === "unhandled rejection" ? "UNCAUGHT_EXCEPTION" : "INTERNAL";
    log.error({ err, code, where, notLogged: st.quiet }, `internal error in ${where}; the agent carries on (see ztunnel_internal_errors_total)`);
    st.at = now;
    st.quiet = 0;
  };
  const onException = (err: Error): void => report("uncaught exception", err);
  const onRejection = (reason: unknown): void => report("unhandled rejection", reason);
  return {
    report,
    install() {
      process.on("uncaughtException", onException);
      process.on("unhandledRejection", onRejection);
    },
    uninstall() {
      process.off("uncaughtException", onException);
      process.off("unhandledRejection", onRejection);
    },
  };
}
