/**
 * Turns the proxy's connection records into Istio's TCP metrics and exactly one
 * access-log line per connection. Labels are resolved once per connection (at
 * `opened`, or at `closed` for one that never opened); nothing happens per chunk.
 */
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { ConnectionObserver, ConnectionRecord } from "@zt/proxy";
import { createAccessLog } from "./access-log.js";
import { droppedLogLines } from "./logging.js";

const LABEL_NAMES = [
  "reporter",
  "source_workload",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "destination_workload",
  "destination_workload_namespace",
  "destination_principal",
  "destination_service",
  "request_protocol",
  "connection_security_policy",
  "response_flags",
] as const;
type LabelName = (typeof LABEL_NAMES)[number];
type Labels = Record<LabelName, string>;

export interface TelemetryDeps {
  /** A dedicated registry (never prom-client's global one), in Prometheus text format. */
  readonly registry: Registry;
  readonly logger: Logger;
}

export type Telemetry = ConnectionObserver & { readonly registry: Registry };


export function createTelemetry(deps: TelemetryDeps): Telemetry {
  const { registry } = deps;
  const counter = (name: string, help: string): Counter<LabelName> =>
    new Counter({ name, help, labelNames: LABEL_NAMES, registers: [registry] });
  const opened = counter("istio_tcp_connections_opened_total", "TCP connections opened (destination connected)");
  const closed = counter("istio_tcp_connections_closed_total", "TCP connections closed after having opened");
  const failed = counter("istio_tcp_connections_failed_total", "TCP connections that ended with a response flag other than '-'");
  const sent = counter("istio_tcp_sent_bytes_total", "Bytes sent from the source towards the destination");
  const received = counter("istio_tcp_received_bytes_total", "Bytes sent from the destination back to the source");
  const dropped = new Counter({
    name: "ztunnel_connections_dropped_total",
    help: "Connections a data-path listener reset: at accept (reason=full: it, or the data path, held all the descriptors it may), or still in their handshake to make room (reason=evicted)",
    labelNames: ["listener", "reason"],
    registers: [registry],
  });
  const dryRuns = new Counter({
    name: "ztunnel_authz_dry_run_total",
    help: "Inbound connections to which dry-run policies applied, by those policies (comma-separated) and what enforcing them would have decided",
    labelNames: ["policies", "decision"],
    registers: [registry],
  });
  const access = createAccessLog(deps.logger);
  new Gauge({
    name: "ztunnel_access_log_suppressed_total",
    help: "Refusal access-log lines not written (rate limit per code and source, and in all); the connections are counted by the istio_tcp_* metrics",
    registers: [registry],
    collect() {
      this.set(access.suppressed());
    },
  });
  new Gauge({
    name: "ztunnel_log_lines_dropped_total",
    help: "Log lines dropped because stdout's reader fell more than 16 MiB behind",
    registers: [registry],
    collect() {
      this.set(droppedLogLines());
    },
  });
  const lastDropLog = new Map<string, { at: number; since: number }>();
  // Records opened and not closed yet, and records closed (a second `closed` is ignored). The
  // labels are not kept from `opened` to `closed`: an idle connection would hold them all the while.
  const open = new WeakSet<ConnectionRecord>();
  const done = new WeakSet<ConnectionRecord>();

  return {
    registry,
    opened(rec) {
      if (open.has(rec) || done.has(rec)) return;
      open.add(rec);
      opened.labels(labelsOf(rec)).inc();
    },
    closed(rec) {
      if (done.has(rec)) return;
      done.add(rec);
      const wasOpen = open.delete(rec);
      const labels = labelsOf(rec);
      if (wasOpen) closed.labels(labels).inc();
      if (rec.flag !== "-") failed.labels(labels).inc();
      if (rec.bytesSent > 0) sent.labels(labels).inc(rec.bytesSent);
      if (rec.bytesRecv > 0) received.labels(labels).inc(rec.bytesRecv);
      if (rec.dryRun) dryRuns.labels(rec.dryRun.policies, rec.dryRun.decision).inc();
      access.write(rec, wasOpen);
    },
    dropped(listener, reason) {
      dropped.labels({ listener, reason }).inc();
      // One line per listener per 10 s at most, with the count since the last one.
      const now = Date.now();
      const st = lastDropLog.get(listener) ?? { at: 0, since: 0 };
      st.since++;
      lastDropLog.set(listener, st);
      if (now - st.at < 10_000) return;
      deps.logger.warn({ component: "listener", listener, dropped: st.since, code: "LISTENER_FULL" }, `the ${listener} listener reset ${st.since} connection(s) for want of descriptors, the oldest still in its handshake first (see ztunnel_connections_dropped_total)`);
      st.at = now;
      st.since = 0;
    },
  };
}

function labelsOf(rec: ConnectionRecord): Labels {
  const { src, dst } = rec;
  return {
    reporter: rec.direction === "outbound" ? "source" : "destination",
    source_workload: src.workload || "unknown",
    source_workload_namespace: src.namespace || "unknown",
    source_principal: src.identity || "unknown",
    source_app: src.app || "unknown",
    destination_workload: dst.workload || "unknown",
    destination_workload_namespace: dst.namespace || "unknown",
    destination_principal: dst.identity || "unknown",
    destination_service: rec.dstService || "unknown",
    request_protocol: "tcp",
    connection_security_policy: rec.security === "mutual_tls" ? "mutual_tls" : "unknown",
    response_flags: rec.flag,
  };
}
