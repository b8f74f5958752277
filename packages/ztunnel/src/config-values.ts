/**
 * Parsers for single configuration values. Each returns the typed value or throws
 * `Invalid` whose message is the operator-facing reason; config.ts collects them all.
 */
import path from "node:path";
import { normalizeIp } from "@zt/state";
import { parseLogLevel, type LogLevel } from "./logging.js";

/** A reason a value was rejected (no code: it always ends up inside a ConfigError). */
export class Invalid extends Error {
  override readonly name = "Invalid";
}

/** A TCP bind address. `ip` is normalized ("::" and "0.0.0.0" mean every address). */
export interface BindAddr {
  readonly ip: string;
  readonly port: number;
}

/**
 * Where HBONE inbound listens: one address (`kind: "addr"`), or `workloads:<port>`
 * (`kind: "workloads"`): one listener on each IP of an HBONE workload on this node,
 * so that several agents can share one host, each on its own loopback addresses.
 */
export type InboundAddr = ({ readonly kind: "addr" } & BindAddr) | { readonly kind: "workloads"; readonly port: number };

const UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;

/** "300ms", "10s", "5m", "1h", "1h30m", "1.5s", or a plain integer number of seconds. */
export function parseDuration(raw: string, minMs: number, maxMs: number): number {
  let ms: number;
  if (/^\d+$/.test(raw)) {
    ms = Number(raw) * 1000;
  } else {
    ms = 0;
    DURATION_PART.lastIndex = 0;
    let end = 0;
    for (let m = DURATION_PART.exec(raw); m; m = DURATION_PART.exec(raw)) {
      ms += Number(m[1]) * (UNITS_MS[m[2] ?? ""] ?? Number.NaN);
      end = DURATION_PART.lastIndex;
    }
    if (end === 0 || end !== raw.length || !Number.isFinite(ms)) {
      throw new Invalid('not a duration; expected e.g. "300ms", "10s", "5m", "1h30m" or a number of seconds');
    }
    ms = Math.round(ms);
  }
  if (ms < minMs) throw new Invalid(`too short: ${ms} ms; the minimum is ${formatMs(minMs)}`);
  if (ms > maxMs) throw new Invalid(`too long: ${ms} ms; the maximum is ${formatMs(maxMs)}`);
  return ms;
}

function formatMs(ms: number): string {
  if (ms === 0 || ms % 1000 !== 0) return `${ms}ms`;
  return `${ms / 1000}s`;
}

/** A plain decimal integer in [min, max]. */
export function parseInt_(raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw new Invalid(`not a whole number; expected an integer from ${min} to ${max}`);
  const n = Number(raw);
  if (n < min || n > max) throw new Invalid(`out of range; expected an integer from ${min} to ${max}`);
  return n;
}

export function parseOneOf<T extends string>(raw: string, values: readonly T[], caseInsensitive: boolean): T {
  const found = values.find((v) => (caseInsensitive ? v.toLowerCase() === raw.toLowerCase() : v === raw));
  if (found === undefined) throw new Invalid(`expected one of ${values.join(", ")}`);
  return found;
}

export function parseNonEmpty(raw: string): string {
  if (raw.length === 0) throw new Invalid("must not be empty");
  return raw;
}

/** A gRPC server as Istio writes it: "host:port" (a DNS name, an IPv4 address or a bracketed IPv6 one), TLS implied. */
export function parseGrpcAddress(raw: string): string {
  if (/^[a-z]+:\/\//i.test(raw)) throw new Invalid(`write host:port without a scheme (TLS is always used), e.g. ${raw.replace(/^[a-z]+:\/\//i, "")}`);
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(raw);
  if (!m) throw new Invalid("expected host:port, e.g. istiod.istio-system.svc:15012");
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Invalid(`port ${port} is out of range (1 to 65535)`);
  return raw;
}

/** Unix sockets are named `<dir>/<8 hex>.sock`, and a socket path holds at most 107 bytes. */
const MAX_SOCKET_DIR = 90;

/** A directory for the agents' unix sockets; a relative path is resolved against the working directory, then measured. */
export function parseSocketDir(raw: string): string {
  const dir = path.resolve(raw);
  if (Buffer.byteLength(dir) > MAX_SOCKET_DIR) throw new Invalid(`too long for unix socket paths: at most ${MAX_SOCKET_DIR} bytes${dir === raw ? "" : ` (resolved: ${dir})`}`);
  return dir;
}

/** SPIFFE trust domain: lower-case letters, digits, ".", "-", "_"; DNS-like labels. */
export function parseTrustDomain(raw: string): string {
  if (raw.length > 255) throw new Invalid("too long; a trust domain has at most 255 characters");
  if (!/^[a-z0-9._-]+$/.test(raw)) {
    throw new Invalid('not a trust domain; use lower-case letters, digits, ".", "-" and "_" (e.g. cluster.local)');
  }
  if (raw.split(".").some((label) => label === "")) throw new Invalid('not a trust domain; empty label (leading, trailing or double ".")');
  return raw;
}

export function parseLogLevelValue(raw: string): LogLevel {
  const level = parseLogLevel(raw);
  if (level === undefined) throw new Invalid('expected trace, debug, info, warn, error or off (or RUST_LOG style, e.g. "info,foo=debug")');
  return level;
}

/** "ip:port" or "[v6]:port"; port 0 means any free port (tests). */
export function parseBindAddr(raw: string): BindAddr {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(raw) ?? /^([^:[\]]+):(\d{1,5})$/.exec(raw);
  const hint = 'expected "ip:port" or "[ipv6]:port", e.g. 127.0.0.1:15000';
  if (!m) throw new Invalid(`not a bind address; ${hint}`);
  const ip = normalizeIp(m[1] ?? "");
  if (ip === undefined) throw new Invalid(`"${m[1]}" is not an IP address; ${hint}`);
  const port = Number(m[2]);
  if (port > 65_535) throw new Invalid(`port ${port} is out of range (0-65535)`);
  return { ip, port };
}

/** An inbound bind address, or "workloads:<port>" (see InboundAddr). */
export function parseInboundAddr(raw: string): InboundAddr {
  const m = /^workloads:(\d{1,5})$/.exec(raw);
  if (m) {
    const port = Number(m[1]);
    if (port < 1 || port > 65_535) throw new Invalid(`port ${port} is out of range; "workloads:<port>" needs a fixed port (1-65535)`);
    return { kind: "workloads", port };
  }
  try {
    return { kind: "addr", ...parseBindAddr(raw) };
  } catch (err) {
    if (err instanceof Invalid) throw new Invalid(`${err.message}, or "workloads:<port>"`);
    throw err;
  }
}
