/** The Prometheus endpoint: `/metrics` and `/stats/prometheus`, on its own port. */
import http from "node:http";
import { Registry } from "prom-client";
import { CONTROL_SERVER_OPTIONS } from "./control-limits.js";

const PATHS = new Set(["/metrics", "/stats/prometheus"]);

/** An http.Server (not yet listening) serving the metrics `metrics` gathers, in Prometheus' text format. */
export function createStatsServer(metrics: () => Promise<string>): http.Server {
  return http.createServer(CONTROL_SERVER_OPTIONS, (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    if (!PATHS.has(path)) return reply(res, 404, "not found; metrics are at /metrics and /stats/prometheus\n");
    if (req.method !== "GET" && req.method !== "HEAD") return reply(res, 405, "use GET\n", { allow: "GET, HEAD" });
    metrics().then(
      (body) => reply(res, 200, body, { "content-type": Registry.PROMETHEUS_CONTENT_TYPE }),
      (err: unknown) => reply(res, 500, `collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
}

function reply(res: http.ServerResponse, status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(body);
}
