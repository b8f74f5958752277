/**
 * Who may use the admin port. A web page open in a browser on the node can send requests
 * to 127.0.0.1:15000 (cross-site POSTs), and through DNS rebinding it can even read the
 * answers under its own host name. So:
 * - every admin request must carry a Host that names this admin: `localhost`, a loopback
 *   address (127.0.0.0/8, [::1]) or ADMIN_ADDR's address — with or without a port (a
 *   `kubectl port-forward` changes the port). With ADMIN_ADDR on a wildcard, any address of
 *   this host counts. A rebinding page has its own DNS name in Host and is refused, for
 *   GET /config_dump too.
 * - a write (any method but GET/HEAD: POST /quitquitquit, POST /logging) must not come from
 *   another origin: an `Origin` header must be the admin's own (`http://<Host>`), and
 *   `Sec-Fetch-Site` must be `same-origin` or `none`. curl sends neither and is let through.
 */
import type http from "node:http";
import { normalizeIp } from "@zt/state";

export interface AdminOriginPolicy {
  /** ADMIN_ADDR's address ("0.0.0.0" or "::" for a wildcard). */
  readonly adminIp: string;
  /** This host's addresses, used when ADMIN_ADDR is a wildcard. */
  readonly isLocalAddress?: (ip: string) => boolean;
}

/** Why the request is refused (for a 403), or undefined when it may go on. */
export function refuseForeign(req: http.IncomingMessage, policy: AdminOriginPolicy): string | undefined {
  const host = req.headers.host;
  if (host !== undefined && !hostAllowed(host, policy)) {
    return `the admin port answers only requests addressed to it (Host localhost, 127.0.0.1, [::1] or ADMIN_ADDR's ${policy.adminIp}, any port); Host ${JSON.stringify(host)} is refused, a web page must not reach the admin through its own DNS name`;
  }
  const method = req.method ?? "GET";
  if (method === "GET" || method === "HEAD") return undefined;
  const origin = req.headers.origin;
  if (origin !== undefined && (host === undefined || origin.toLowerCase() !== `http://${host.toLowerCase()}`)) {
    return `cross-origin ${method} refused: Origin ${JSON.stringify(origin)} is not this admin's own origin; use curl or a page served by the admin itself`;
  }
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") {
    return `cross-origin ${method} refused: the browser reports Sec-Fetch-Site ${JSON.stringify(site)}; use curl or a page served by the admin itself`;
  }
  return undefined;
}

function hostAllowed(host: string, policy: AdminOriginPolicy): boolean {
  const name = hostName(host.toLowerCase());
  if (name === undefined) return false;
  if (name === "localhost") return true;
  const ip = normalizeIp(name);
  if (ip === undefined) return false;
  if (ip.startsWith("127.") || ip === "::1" || ip === policy.adminIp) return true;
  const wildcard = policy.adminIp === "0.0.0.0" || policy.adminIp === "::";
  return wildcard && (policy.isLocalAddress?.(ip) ?? false);
}

/** The host part of a Host header: "name", "name:port", "[v6]", "[v6]:port". */
function hostName(host: string): string | undefined {
  const m = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(host) ?? /^([^:[\]]+)(?::\d{1,5})?$/.exec(host);
  return m?.[1];
}
