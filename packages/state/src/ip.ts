/** Textual IP helpers: one normalized form for every address the agent compares. */
import ipaddr from "ipaddr.js";

type Addr = ipaddr.IPv4 | ipaddr.IPv6;

/** Parses strictly: IPv4 must be four-part decimal (no "10", "0xa.0.0.1", "010.0.0.1"). */
function parseAddr(s: string): Addr | undefined {
  if (s.length === 0 || s.length > 64) return undefined;
  try {
    if (s.includes(":")) {
      if (!ipaddr.IPv6.isValid(s)) return undefined;
      const a = ipaddr.IPv6.parse(s);
      return a.isIPv4MappedAddress() ? a.toIPv4Address() : a;
    }
    return ipaddr.IPv4.isValidFourPartDecimal(s) ? ipaddr.IPv4.parse(s) : undefined;
  } catch {
    return undefined;
  }
}

/** Dotted IPv4 without leading zeros, each part 0-255. */
const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function formatAddr(a: Addr): string {
  return a.kind() === "ipv4" ? a.toString() : (a as ipaddr.IPv6).toRFC5952String();
}

/**
 * The normalized text of an IP: IPv4 dotted decimal, IPv6 compressed lower-case,
 * IPv4-mapped IPv6 ("::ffff:1.2.3.4") as plain IPv4. Undefined when not an IP.
 */
export function normalizeIp(s: string): string | undefined {
  // Already normalized (the common case: the API server and the file write them so): no parse.
  if (CANONICAL_V4.test(s)) return s;
  const a = parseAddr(s);
  return a ? formatAddr(a) : undefined;
}

export function isIpv6(ip: string): boolean {
  return ip.includes(":");
}

/** Parses "1.2.3.4:80" or "[::1]:80" (port 1..65535); the IP comes back normalized. */
export function parseHostPort(s: string): { ip: string; port: number } | undefined {
  let host: string;
  let portText: string;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0 || s[close + 1] !== ":") return undefined;
    host = s.slice(1, close);
    if (!host.includes(":")) return undefined;
    portText = s.slice(close + 2);
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) return undefined;
    host = s.slice(0, colon);
    if (host.includes(":")) return undefined; // bare IPv6 needs brackets
    portText = s.slice(colon + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  const ip = normalizeIp(host);
  return ip === undefined ? undefined : { ip, port };
}

/**
 * "1.2.3.4:80" or "[::1]:80". Built with join, which makes one flat string: `+` and template
 * literals make a tree of string pieces (about three times the size), and every connection's
 * record holds a few of these for its whole life.
 */
export function formatHostPort(ip: string, port: number): string {
  return isIpv6(ip) ? ["[", ip, "]:", port].join("") : [ip, port].join(":");
}

export interface Cidr {
  /** Normalized network address as written (host bits are kept, matching masks them). */
  readonly ip: string;
  readonly prefix: number;
  readonly kind: "ipv4" | "ipv6";
}

/**
 * Parses "10.0.0.0/8", "fd00::/8" or a bare IP (meaning /32 or /128). An IPv4-mapped
 * IPv6 CIDR with prefix >= 96 becomes the IPv4 CIDR it denotes.
 */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf("/");
  const ipText = slash < 0 ? s : s.slice(0, slash);
  const prefixText = slash < 0 ? undefined : s.slice(slash + 1);
  if (prefixText !== undefined && !/^[0-9]{1,3}$/.test(prefixText)) return undefined;
  if (!ipText.includes(":")) {
    const a = parseAddr(ipText);
    if (!a) return undefined;
    const prefix = prefixText === undefined ? 32 : Number(prefixText);
    return prefix <= 32 ? { ip: formatAddr(a), prefix, kind: "ipv4" } : undefined;
  }
  let a6: ipaddr.IPv6;
  try {
    if (!ipaddr.IPv6.isValid(ipText)) return undefined;
    a6 = ipaddr.IPv6.parse(ipText);
  } catch {
    return undefined;
  }
  const prefix = prefixText === undefined ? 128 : Number(prefixText);
  if (prefix > 128) return undefined;
  if (a6.isIPv4MappedAddress()) {
    if (prefix >= 96) return { ip: a6.toIPv4Address().toString(), prefix: prefix - 96, kind: "ipv4" };
  }
  return { ip: a6.toRFC5952String(), prefix, kind: "ipv6" };
}

export function formatCidr(c: Cidr): string {
  return `${c.ip}/${c.prefix}`;
}

const parsedCidrs = new Map<string, { c: Cidr; net: Addr } | null>();

function compiled(cidr: string): { c: Cidr; net: Addr } | undefined {
  let hit = parsedCidrs.get(cidr);
  if (hit === undefined) {
    const c = parseCidr(cidr);
    hit = c ? { c, net: ipaddr.parse(c.ip) } : null;
    if (parsedCidrs.size >= 10_000) parsedCidrs.clear();
    parsedCidrs.set(cidr, hit);
  }
  return hit ?? undefined;
}

/** Whether `ip` (any textual form) lies in `cidr` (string or parsed). False for anything invalid. */
export function cidrContains(cidr: string | Cidr, ip: string): boolean {
  const hit = typeof cidr === "string" ? compiled(cidr) : { c: cidr, net: parseAddr(cidr.ip) };
  const a = parseAddr(ip);
  if (!hit?.net || !a || a.kind() !== hit.c.kind) return false;
  return hit.c.prefix === 0 || a.match(hit.net, hit.c.prefix);
}
