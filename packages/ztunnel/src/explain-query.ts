/** The query of `/debug/explain` (and `ztunnel explain`): src, dst (ip:port, or ip with port), identity. */
import type { ExplainQuery } from "@zt/proxy";
import { normalizeIp, parseHostPort } from "@zt/state";

export const EXPLAIN_USAGE = "src=<source IP>&dst=<destination ip:port | [ipv6]:port | service hostname:port>[&identity=spiffe://<td>/ns/<ns>/sa/<sa>] (or dst=<ip or hostname>&port=<port>)";

/** A DNS name as SOCKS5 carries one: letters, digits, '-' and '.', at most 253. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** The query, or why it cannot be explained (for a 400). */
export function parseExplainQuery(p: URLSearchParams): ExplainQuery | { error: string } {
  const bad = (why: string): { error: string } => ({ error: `${why}; use ${EXPLAIN_USAGE}` });
  for (const k of p.keys()) if (!["src", "dst", "port", "identity"].includes(k)) return bad(`unknown parameter ${JSON.stringify(k.slice(0, 64))}`);
  for (const k of ["src", "dst", "port", "identity"]) if (p.getAll(k).length > 1) return bad(`${k} given more than once`);
  const src = p.get("src");
  const dst = p.get("dst");
  if (!src) return bad("missing src");
  if (!dst) return bad("missing dst");
  const srcIp = normalizeIp(src.startsWith("[") && src.endsWith("]") ? src.slice(1, -1) : src);
  if (!srcIp) return bad(`src ${quote(src)} is not an IP address`);
  const to = destination(dst, p.get("port"));
  if ("error" in to) return bad(to.error);
  const identity = p.get("identity");
  if (identity === "") return bad("identity is empty");
  return { srcIp, dstIp: to.ip, dstPort: to.port, ...(to.host !== undefined ? { dstHost: to.host } : {}), ...(identity !== null ? { identity } : {}) };
}

function destination(dst: string, port: string | null): { ip: string; host?: string; port: number } | { error: string } {
  if (port === null) {
    const hp = parseHostPort(dst);
    if (hp) return hp;
    const colon = dst.lastIndexOf(":");
    const named = colon > 0 ? hostname(dst.slice(0, colon), dst.slice(colon + 1)) : undefined;
    if (named) return named;
    const ip = normalizeIp(dst);
    if (ip?.includes(":")) return { error: `dst ${quote(dst)} is an IPv6 address without a port: write [${ip}]:<port>, or add port=` };
    return { error: ip ? `dst ${quote(dst)} has no port: give ip:port or port=` : `dst ${quote(dst)} is not ip:port (an IPv6 address goes in brackets: [fd00::1]:80)` };
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return { error: `port ${quote(port)} is not a port (1-65535)` };
  const ip = normalizeIp(dst.startsWith("[") && dst.endsWith("]") ? dst.slice(1, -1) : dst);
  if (ip) return { ip, port: Number(port) };
  return hostname(dst, port) ?? { error: `dst ${quote(dst)} is neither an IP address nor a hostname (with port=, give the address alone)` };
}

/** A service hostname with its port (not an IP: those are parsed above). */
function hostname(host: string, port: string): { ip: string; host: string; port: number } | undefined {
  if (!HOSTNAME.test(host) || /^[\d.]+$/.test(host) || !/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return undefined;
  return { ip: "", host: host.toLowerCase(), port: Number(port) };
}

function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
