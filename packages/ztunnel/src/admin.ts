/**
 * The admin port (127.0.0.1:15000 by default): `/config_dump`, `/debug/connections`,
 * `/debug/status`, `/debug/explain`, `/logging`, `/quitquitquit` and a live page at `/`.
 * Never on the data path.
 */
import http from "node:http";
import type { Logger } from "pino";
import type { Explanation, ExplainQuery } from "@zt/proxy";
import { parseConnectionQuery, streamConnections, type ConnectionSource } from "./admin-connections.js";
import { refuseForeign, type AdminOriginPolicy } from "./admin-origin.js";
import { ADMIN_PAGE_CSP, adminPage } from "./admin-page.js";
import { CONTROL_SERVER_OPTIONS } from "./control-limits.js";
import { parseExplainQuery } from "./explain-query.js";
import { LOG_LEVELS, operatorLevel, parseLogLevel, pinoLevel } from "./logging.js";

export interface AdminDeps {
  /** The `/config_dump` document (serialized as pretty JSON). */
  readonly configDump: () => unknown | Promise<unknown>;
  readonly logger: Logger;
  /** Receives a pino level name ("trace" … "error", or "silent" for off). */
  setLogLevel(level: string): void;
  /** The current pino level name. */
  getLogLevel(): string;
  /** Called once the `/quitquitquit` answer has been sent. */
  shutdown(): void;
  /** Shown on `/` as a key/value table (e.g. node, version, counts). */
  readonly summary: () => unknown | Promise<unknown>;
  /** `/debug/explain`: what the agent and the destination's agent would do with a connection. */
  readonly explain: (q: ExplainQuery) => Explanation;
  /** `/debug/status`: readiness, discovery, certificates, capture, pool (what `/` polls). */
  readonly status: () => unknown | Promise<unknown>;
  /** The workers' connections, for `/debug/connections`. */
  readonly connections: ConnectionSource;
  /** NODE_NAME, named in `/debug/connections`. */
  readonly nodeName: string;
  /** Which Host and Origin are this admin's own (see admin-origin.ts). */
  readonly origin: AdminOriginPolicy;
}

const PAGES: readonly (readonly [string, string])[] = [
  ["/config_dump", "workloads, services, policies, certificates and config as JSON"],
  ["/debug/explain", "why a connection would be allowed, denied or routed where (?src=<ip>&dst=<ip:port or hostname:port>[&identity=<spiffe id>])"],
  ["/debug/connections", "every open proxied connection as JSON (?direction=inbound|outbound, ?namespace=, ?limit=)"],
  ["/debug/status", "readiness, discovery, certificates, capture rules and the HBONE pool as JSON"],
  ["/logging", "current log level (POST /logging?level=debug to change it)"],
  ["/quitquitquit", "POST: drain and stop the agent"],
];

export function createAdminServer(deps: AdminDeps): http.Server {
  const log = deps.logger.child({ component: "admin" });
  return http.createServer(CONTROL_SERVER_OPTIONS, (req, res) => {
    const target = req.url ?? "/";
    if (!URL.canParse(target, "http://admin.invalid")) {
      // A request target no URL parser takes ("//x:99999"): answered, not thrown in the listener.
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
      res.end("bad request: the request target is not a path\n");
      return;
    }
    const url = new URL(target, "http://admin.invalid");
    const method = req.method ?? "GET";
    const send = (status: number, body: string, type = "text/plain; charset=utf-8", headers: http.OutgoingHttpHeaders = {}): void => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store", ...headers });
      res.end(body);
    };
    const only = (allowed: string): boolean => {
      if (method === allowed) return true;
      send(405, `method ${method} not allowed on ${url.pathname}; use ${allowed}\n`, undefined, { allow: allowed });
      return false;
    };
    const refused = refuseForeign(req, deps.origin);
    if (refused !== undefined) {
      log.warn({ path: url.pathname, method, host: req.headers.host, origin: req.headers.origin }, `admin request refused: ${refused}`);
      return send(403, `forbidden: ${refused}\n`);
    }
    try {
      switch (url.pathname) {
        case "/config_dump":
          if (only("GET")) later(deps.configDump, json);
          return;
        case "/debug/explain": {
          if (!only("GET")) return;
          const q = parseExplainQuery(url.searchParams);
          if ("error" in q) return send(400, `EXPLAIN_QUERY_INVALID: ${q.error}\n`);
          return json(deps.explain(q));
        }
        case "/debug/status":
          if (only("GET")) later(deps.status, json);
          return;
        case "/debug/connections": {
          if (!only("GET")) return;
          const q = parseConnectionQuery(url.searchParams);
          if ("error" in q) return send(400, `CONNECTIONS_QUERY_INVALID: ${q.error}\n`);
          streamConnections(res, deps.connections, q, deps.nodeName).catch(failed);
          return;
        }
        case "/logging":
          return logging(method, url.searchParams.get("level"));
        case "/quitquitquit":
          if (!only("POST")) return;
          log.info("shutdown requested through /quitquitquit");
          res.once("finish", () => deps.shutdown());
          return send(200, "OK\n");
        case "/":
          if (only("GET")) later(deps.summary, (summary) => send(200, adminPage(summary, PAGES), "text/html; charset=utf-8", { "content-security-policy": ADMIN_PAGE_CSP, "x-content-type-options": "nosniff" }));
          return;
        default:
          return send(404, `not found: ${url.pathname}; see / for the admin pages\n`);
      }
    } catch (err) {
      failed(err);
    }

    function json(v: unknown): void {
      send(200, `${JSON.stringify(v, null, 2)}\n`, "application/json");
    }

    /** Logged; a 500 when nothing was sent yet, else the response is cut (a client must not take half for all). */
    function failed(err: unknown): void {
      log.error({ err, path: url.pathname }, "admin request failed");
      if (!res.headersSent) send(500, `internal error: ${err instanceof Error ? err.message : String(err)}\n`);
      else res.destroy();
    }

    /** A page whose content is gathered (from the workers) before it is sent. */
    function later(get: () => unknown, then: (v: unknown) => void): void {
      Promise.resolve().then(get).then(then, failed);
    }

    function logging(m: string, raw: string | null): void {
      const current = (): string => `current log level is ${operatorLevel(deps.getLogLevel())}\n`;
      if (m === "GET") return send(200, current());
      if (m !== "POST") return send(405, `method ${m} not allowed on /logging; use GET or POST\n`, undefined, { allow: "GET, POST" });
      if (raw === null || raw === "") return send(400, `missing level: use POST /logging?level=<${LOG_LEVELS.join("|")}>\n`);
      const level = parseLogLevel(raw);
      if (level === undefined) return send(400, `invalid level ${JSON.stringify(raw)}: expected one of ${LOG_LEVELS.join(", ")}\n`);
      deps.setLogLevel(pinoLevel(level));
      log.info({ level }, "log level changed through /logging");
      send(200, current());
    }
  });
}
