import http2, { type ClientHttp2Session, type OutgoingHttpHeaders } from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { clientConnectOptions, type WorkloadCertificate } from "@zt/identity";

export type Handshake = { ok: true; socket: tls.TLSSocket } | { ok: false; error: string };

/** A TLS client towards an HBONE listener; `tweak` overrides options (version, ALPN, cert). */
export function tlsTo(ip: string, port: number, cert: WorkloadCertificate | undefined, tweak: tls.ConnectionOptions = {}): Promise<Handshake> {
  const base: tls.ConnectionOptions = cert
    ? clientConnectOptions(cert, [])
    : { ALPNProtocols: ["h2"], minVersion: "TLSv1.3" };
  return new Promise((resolve) => {
    const s = tls.connect({ ...base, checkServerIdentity: () => undefined, rejectUnauthorized: false, host: ip, port, ...tweak });
    s.once("secureConnect", () => {
      // TLS 1.3: a client certificate the server refuses is only reported after the handshake.
      const t = setTimeout(() => resolve({ ok: true, socket: s }), 150);
      s.once("error", (e: Error) => {
        clearTimeout(t);
        resolve({ ok: false, error: e.message });
      });
      s.once("close", () => {
        clearTimeout(t);
        resolve({ ok: false, error: "closed" });
      });
    });
    s.once("error", (e: Error) => resolve({ ok: false, error: e.message }));
  });
}

/** An HTTP/2 session over an established TLS socket. */
export function h2Over(socket: tls.TLSSocket, ip: string, port: number): ClientHttp2Session {
  const session = http2.connect(`https://${ip}:${port}`, { createConnection: () => socket });
  session.on("error", () => {});
  return session;
}

export interface StreamAnswer {
  status: number | undefined;
  rstCode: number | undefined;
  stream: http2.ClientHttp2Stream;
}

/** Send one request and wait for its response headers or its reset. */
export function request(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<StreamAnswer> {
  return new Promise((resolve) => {
    const stream = session.request(headers, { endStream: false });
    stream.on("error", () => {});
    stream.once("response", (h) => resolve({ status: Number(h[":status"]), rstCode: undefined, stream }));
    stream.once("close", () => resolve({ status: undefined, rstCode: stream.rstCode, stream }));
  });
}

/** Raw bytes to a port, then wait for the peer to close. */
export function rawBytes(ip: string, port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: ip, port }, () => s.write(bytes));
    let got = "";
    s.on("data", (c: Buffer) => (got += c.toString("latin1")));
    s.on("error", () => {});
    s.once("close", () => resolve(got));
  });
}
