/** Readiness (`GET /healthz/ready`) on its own port: what the kubelet probes. */
import http from "node:http";
import { CONTROL_SERVER_OPTIONS } from "./control-limits.js";

export interface ReadinessDeps {
  /** What the agent still waits for (e.g. "certificate spiffe://…"); empty when ready. */
  readonly pending: () => string[] | Promise<string[]>;
}

/** 200 "ready" when nothing is pending, else 503 listing what is, one per line. */
export function createReadinessServer(deps: ReadinessDeps): http.Server {
  return http.createServer(CONTROL_SERVER_OPTIONS, (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    const send = (status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers });
      res.end(body);
    };
    if (path !== "/healthz/ready") return send(404, "not found; readiness is at /healthz/ready\n");
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "use GET\n", { allow: "GET, HEAD" });
    Promise.resolve()
      .then(() => deps.pending())
      .then(
        (pending) => (pending.length === 0 ? send(200, "ready\n") : send(503, `${pending.join("\n")}\n`)),
        (err: unknown) => send(503, `readiness check failed: ${err instanceof Error ? err.message : String(err)}\n`),
      );
  });
}
