/**
 * The controller's HTTP port (MONITORING_ADDR, 15014): `/metrics` (Prometheus), `/ready`
 * (200, or 503 with what it still waits for), `/debug/status` (JSON: discovery, the CA,
 * every xDS client). Read-only: anything but GET/HEAD gets 405.
 */
import http from "node:http";
import type { Registry } from "prom-client";

export interface MonitoringDeps {
  readonly registry: Registry;
  readonly pending: () => string[];
  readonly status: () => unknown;
}

export function createMonitoringServer(d: MonitoringDeps): http.Server {
  return http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("read-only endpoint: use GET\n");
        return;
      }
      if (url.pathname === "/ready") {
        const p = d.pending();
        res.writeHead(p.length === 0 ? 200 : 503, { "content-type": "text/plain" }).end(p.length === 0 ? "ready\n" : `not ready: ${p.join("; ")}\n`);
      } else if (url.pathname === "/metrics") {
        res.writeHead(200, { "content-type": d.registry.contentType }).end(await d.registry.metrics());
      } else if (url.pathname === "/debug/status") {
        res.writeHead(200, { "content-type": "application/json" }).end(`${JSON.stringify(d.status(), null, 2)}\n`);
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: /ready, /metrics, /debug/status\n");
      }
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`internal error: ${(err as Error).message}\n`);
    });
  });
}
