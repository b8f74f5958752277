import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { ConnectionRecord } from "@zt/proxy";
import { createLogger } from "./logging.js";
import { createTelemetry } from "./telemetry.js";

function setup(): { telemetry: ReturnType<typeof createTelemetry>; logs: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split("\n").filter((l) => l !== ""));
      cb();
    },
  });
  const logger = createLogger({ logFormat: "json", logLevel: "info" }, sink);
  const telemetry = createTelemetry({ registry: new Registry(), logger });
  return { telemetry, logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function okRecord(): ConnectionRecord {
  return {
    direction: "outbound",
    listener: "socks5",
    startMs: Date.now() - 25,
    src: { addr: "10.0.0.1:40000", workload: "sleep-1", namespace: "default", identity: "spiffe://cluster.local/ns/default/sa/sleep", app: "sleep" },
    dst: { addr: "10.0.0.2:8080", workload: "echo-1", namespace: "default", identity: "spiffe://cluster.local/ns/default/sa/echo" },
    dstHboneAddr: "10.0.0.2:15008",
    dstService: "echo.default.svc.cluster.local",
    security: "mutual_tls",
    bytesSent: 0,
    bytesRecv: 0,
    flag: "-",
  };
}

function failedRecord(): ConnectionRecord {
  return {
    direction: "inbound",
    listener: "hbone",
    startMs: Date.now(),
    src: { addr: "10.0.0.9:5555" },
    dst: { addr: "10.0.0.2:9999", workload: "echo-1", namespace: "default" },
    security: "none",
    bytesSent: 0,
    bytesRecv: 0,
    flag: "DENY",
    error: { code: "AUTHZ_DENIED", message: "denied by default/deny-9999" },
  };
}

const OK_LABELS =
  'reporter="source",source_workload="sleep-1",source_workload_namespace="default",' +
  'source_principal="spiffe://cluster.local/ns/default/sa/sleep",source_app="sleep",' +
  'destination_workload="echo-1",destination_workload_namespace="default",' +
  'destination_principal="spiffe://cluster.local/ns/default/sa/echo",destination_service="echo.default.svc.cluster.local",' +
  'request_protocol="tcp",connection_security_policy="mutual_tls",response_flags="-"';

const FAILED_LABELS =
  'reporter="destination",source_workload="unknown",source_workload_namespace="unknown",' +
  'source_principal="unknown",source_app="unknown",destination_workload="echo-1",destination_workload_namespace="default",' +
  'destination_principal="unknown",destination_service="unknown",request_protocol="tcp",' +
  'connection_security_policy="unknown",response_flags="DENY"';

describe("createTelemetry", () => {
  it("counts Istio TCP metrics with exact names and labels", async () => {
    const { telemetry } = setup();
    const ok = okRecord();
    telemetry.opened(ok);
    ok.bytesSent = 11;
    ok.bytesRecv = 22;
    telemetry.closed(ok);
    telemetry.closed(failedRecord());

    const text = await telemetry.registry.metrics();
    const series = text.split("\n").filter((l) => l.startsWith("istio_"));
    expect(series.sort()).toEqual(
      [
        `istio_tcp_connections_opened_total{${OK_LABELS}} 1`,
        `istio_tcp_connections_closed_total{${OK_LABELS}} 1`,
        `istio_tcp_sent_bytes_total{${OK_LABELS}} 11`,
        `istio_tcp_received_bytes_total{${OK_LABELS}} 22`,
        `istio_tcp_connections_failed_total{${FAILED_LABELS}} 1`,
      ].sort(),
    );
    expect(text).toContain("# TYPE istio_tcp_connections_opened_total counter");
  });

  it("writes exactly one access-log line per connection, even if closed twice", () => {
    const { telemetry, logs } = setup();
    const ok = okRecord();
    telemetry.opened(ok);
    ok.bytesSent = 5;
    telemetry.closed(ok);
    telemetry.closed(ok);
    const bad = failedRecord();
    telemetry.closed(bad);

    const access = logs().filter((l) => l["component"] === "access");
    expect(access).toHaveLength(2);
    const [a, b] = access;
    expect(a).toMatchObject({
      level: "info",
      "src.addr": "10.0.0.1:40000",
      "src.workload": "sleep-1",
      "src.namespace": "default",
      "src.identity": "spiffe://cluster.local/ns/default/sa/sleep",
      "dst.addr": "10.0.0.2:8080",
      "dst.hbone_addr": "10.0.0.2:15008",
      "dst.service": "echo.default.svc.cluster.local",
      "dst.workload": "echo-1",
      "dst.namespace": "default",
      "dst.identity": "spiffe://cluster.local/ns/default/sa/echo",
      direction: "outbound",
      bytes_sent: 5,
      bytes_recv: 0,
    });
    expect(a?.["duration"]).toBeGreaterThanOrEqual(25);
    expect(a).not.toHaveProperty("error");
    expect(b).toMatchObject({ level: "warn", direction: "inbound", error: "AUTHZ_DENIED: denied by default/deny-9999" });
    expect(b).not.toHaveProperty("src.identity");
    expect(b).not.toHaveProperty("dst.hbone_addr");
  });

  it("counts a connection that opened and then failed as closed and failed", async () => {
    const { telemetry } = setup();
    const rec = okRecord();
    telemetry.opened(rec);
    rec.flag = "RESET";
    telemetry.closed(rec);
    const text = await telemetry.registry.metrics();
    expect(text).toMatch(/istio_tcp_connections_closed_total\{[^}]*response_flags="RESET"\} 1/);
    expect(text).toMatch(/istio_tcp_connections_failed_total\{[^}]*response_flags="RESET"\} 1/);
    expect(text).toMatch(/istio_tcp_connections_opened_total\{[^}]*response_flags="-"\} 1/);
  });
});

describe("access log under a flood of refusals", () => {
  it("caps every field's length", () => {
    const { telemetry, logs } = setup();
    const rec = failedRecord();
    rec.dst = { addr: "x".repeat(5000) };
    rec.error = { code: "HBONE_BAD_AUTHORITY", message: "y".repeat(50_000) };
    telemetry.closed(rec);
    const [line] = logs();
    expect(String(line!["dst.addr"]).length).toBeLessThan(300);
    expect(String(line!["error"]).length).toBeLessThan(1100);
  });

  it("rate-limits repeated refusals from one source, counts the rest, and says so on the next line", async () => {
    const { telemetry, logs } = setup();
    for (let i = 0; i < 1000; i++) telemetry.closed(failedRecord());
    const lines = logs().filter((l) => l["component"] === "access");
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(11);
    const text = await telemetry.registry.metrics();
    // Every refusal is still counted.
    expect(text).toContain(`istio_tcp_connections_failed_total{${FAILED_LABELS}} 1000`);
    expect(text).toMatch(/ztunnel_access_log_suppressed_total \d+/);
    expect(Number(/ztunnel_access_log_suppressed_total (\d+)/.exec(text)![1])).toBe(1000 - lines.length);
    // Another source is not silenced by the first one's flood.
    const other = failedRecord();
    other.src = { addr: "10.0.0.10:1" };
    telemetry.closed(other);
    expect(logs().filter((l) => l["src.addr"] === "10.0.0.10:1")).toHaveLength(1);
  });

  it("never rate-limits connections that opened: one line each", () => {
    const { telemetry, logs } = setup();
    for (let i = 0; i < 300; i++) {
      const ok = okRecord();
      telemetry.opened(ok);
      ok.flag = "RESET";
      ok.error = { code: "CONNECTION_RESET", message: "reset" };
      telemetry.closed(ok);
    }
    expect(logs().filter((l) => l["component"] === "access")).toHaveLength(300);
  });
});
