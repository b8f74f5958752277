import type net from "node:net";
import { normalizeIp } from "@zt/state";
import { SocksReply } from "@zt/errors";
import { ProxyError } from "./errors.js";

export { SocksReply } from "@zt/errors";


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
    const timer = setTimeout(() => done(new ProxyError("SOCKS_TIMEOUT", "SOCKS5 client sent no complete request in time")), timeoutMs);
    const done = (err: ProxyError | undefined, target?: SocksTarget): void => {
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("end", onEnd);
      socket.removeListener("error", onEnd);
      socket.pause();
      if (err) {
        const reply = err.spec.socks;
        // RFC 1928 has replies for a request only: a client that never greeted gets none.
        if (reply !== null && greeted && !socket.destroyed) {
          socket.write(replyBytes(reply));
          socket.destroySoon();
        } else socket.destroy();
        reject(err);
      } else resolve(target!);
    };
    const onEnd = (): void => done(new ProxyError("SOCKS_INCOMPLETE", "SOCKS5 client closed before sending a complete request"));
    const onData = (chunk: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (buf.length > MAX_HANDSHAKE_BYTES) return done(new ProxyError("SOCKS_MALFORMED", "SOCKS5 handshake too long"));
      if (!greeted) {
        if (buf[0] !== 5) return done(new ProxyError("SOCKS_MALFORMED", `not a SOCKS5 greeting (first byte 0x${(buf[0] ?? 0).toString(16)})`));
        if (buf.length < 2) return;
        const n = buf[1]!;
        if (buf.length < 2 + n) return;
        const methods = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        if (!methods.includes(0x00)) {
          socket.write(Buffer.from([5, 0xff]));
          return done(new ProxyError("SOCKS_NO_ACCEPTABLE_AUTH", "SOCKS5 client offered no 'no authentication' method; only that is supported"));
        }
        greeted = true;
        socket.write(Buffer.from([5, 0]));
      }
      if (buf.length < 5) return;
      if (buf[0] !== 5) return done(new ProxyError("SOCKS_MALFORMED", "SOCKS5 request has a wrong version byte"));
      if (buf[1] !== 1) return done(new ProxyError("SOCKS_UNSUPPORTED_COMMAND", `SOCKS5 command ${buf[1]} is not supported; only CONNECT`));
      const atyp = buf[3];
      let need: number;
      if (atyp === 1) need = 4 + 4 + 2;
      else if (atyp === 4) need = 4 + 16 + 2;
      else if (atyp === 3) need = 4 + 1 + buf[4]! + 2;
      else return done(new ProxyError("SOCKS_BAD_ADDRESS_TYPE", `SOCKS5 address type ${atyp} is not supported`));
      if (buf.length < need) return;
      if (buf.length > need) return done(new ProxyError("SOCKS_MALFORMED", "SOCKS5 client sent data before the CONNECT reply"));
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

/** The RFC 1928 reply for a refusal, from the catalog. */
export function replyFor(err: ProxyError): number {
  return err.spec.socks ?? SocksReply.generalFailure;
}

function formatV6(b: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(i).toString(16));
  return parts.join(":");
}
