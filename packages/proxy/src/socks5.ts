import type net from "node:net";
import { normalizeIp } from "@zt/state";
import { ProxyError } from "./errors.js";

/** RFC 1928 reply codes used by the agent. */
export const SocksReply = {
  ok: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export type SocksTarget = { readonly kind: "ip"; readonly ip: string; readonly port: number } | { readonly kind: "name"; readonly host: string; readonly port: number };

const MAX_HANDSHAKE_BYTES = 600;

/**
 * Read a SOCKS5 greeting (no-auth only) and a CONNECT request from `socket`.
 * Resolves with the target and leaves the socket paused after the request;
 * on malformed input it answers per RFC 1928 where it can and rejects.
 */
export function readSocksRequest(socket: net.Socket, timeoutMs = 10_000): Promise<SocksTarget> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let greeted = false;
    const timer = setTimeout(() => done(new ProxyError("SOCKS_TIMEOUT", "BAD_REQUEST", "SOCKS5 client sent no complete request in time")), timeoutMs);
    const done = (err: ProxyError | undefined, target?: SocksTarget, reply?: number): void => {
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("end", onEnd);
      socket.removeListener("error", onEnd);
      socket.pause();
      if (err) {
        if (reply !== undefined && !socket.destroyed) {
          socket.write(replyBytes(reply));
          socket.destroySoon();
        } else socket.destroy();
        reject(err);
      } else resolve(target!);
    };
    const onEnd = (): void => done(new ProxyError("SOCKS_INCOMPLETE", "BAD_REQUEST", "SOCKS5 client closed before sending a complete request"));
    const onData = (chunk: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (buf.length > MAX_HANDSHAKE_BYTES) return done(new ProxyError("SOCKS_MALFORMED", "BAD_REQUEST", "SOCKS5 handshake too long"));
      if (!greeted) {
        if (buf[0] !== 5) return done(new ProxyError("SOCKS_MALFORMED", "BAD_REQUEST", `not a SOCKS5 greeting (first byte 0x${(buf[0] ?? 0).toString(16)})`));
        if (buf.length < 2) return;
        const n = buf[1]!;
        if (buf.length < 2 + n) return;
        const methods = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        if (!methods.includes(0x00)) {
          socket.write(Buffer.from([5, 0xff]));
          return done(new ProxyError("SOCKS_NO_ACCEPTABLE_AUTH", "BAD_REQUEST", "SOCKS5 client offered no 'no authentication' method; only that is supported"));
        }
        greeted = true;
        socket.write(Buffer.from([5, 0]));
      }
      if (buf.length < 5) return;
      if (buf[0] !== 5) return done(new ProxyError("SOCKS_MALFORMED", "BAD_REQUEST", "SOCKS5 request has a wrong version byte"), undefined, SocksReply.generalFailure);
      if (buf[1] !== 1) return done(new ProxyError("SOCKS_UNSUPPORTED_COMMAND", "BAD_REQUEST", `SOCKS5 command ${buf[1]} is not supported; only CONNECT`), undefined, SocksReply.commandNotSupported);
      const atyp = buf[3];
      let need: number;
      if (atyp === 1) need = 4 + 4 + 2;
      else if (atyp === 4) need = 4 + 16 + 2;
      else if (atyp === 3) need = 4 + 1 + buf[4]! + 2;
      else return done(new ProxyError("SOCKS_BAD_ADDRESS_TYPE", "BAD_REQUEST", `SOCKS5 address type ${atyp} is not supported`), undefined, SocksReply.addressTypeNotSupported);
      if (buf.length < need) return;
      if (buf.length > need) return done(new ProxyError("SOCKS_MALFORMED", "BAD_REQUEST", "SOCKS5 client sent data before the CONNECT reply"), undefined, SocksReply.generalFailure);
      const port = buf.readUInt16BE(need - 2);
      if (atyp === 3) {
        const host = buf.subarray(5, 5 + buf[4]!).toString("latin1");
        const asIp = normalizeIp(host);
        return done(undefined, asIp ? { kind: "ip", ip: asIp, port } : { kind: "name", host, port });
      }
      const raw = buf.subarray(4, need - 2);
      const ip = atyp === 1 ? [...raw].join(".") : normalizeIp(formatV6(raw))!;
      return done(undefined, { kind: "ip", ip, port });
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("error", onEnd);
    socket.resume();
  });
}

export function replyBytes(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}

/** Map a refusal to the closest RFC 1928 reply code. */
export function replyFor(err: ProxyError): number {
  switch (err.flag) {
    case "UNKNOWN_SOURCE":
    case "DENY":
    case "LOOP":
      return SocksReply.notAllowed;
    case "NO_ROUTE":
      return err.code === "REGISTRY_ONLY" ? SocksReply.notAllowed : SocksReply.hostUnreachable;
    case "CONNECT":
      return err.code === "UPSTREAM_TIMEOUT" || err.code === "UPSTREAM_UNREACHABLE" ? SocksReply.hostUnreachable : SocksReply.connectionRefused;
    default:
      return SocksReply.generalFailure;
  }
}

function formatV6(b: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(i).toString(16));
  return parts.join(":");
}
