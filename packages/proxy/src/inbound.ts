import http2, { type ServerHttp2Session } from "node:http2";
import type net from "node:net";
import type tls from "node:tls";
import { peerIdentity } from "@zt/identity";
import { formatHostPort, normalizeIp } from "@zt/state";
import type { ProxyContext } from "./context.js";
import { ProxyError } from "./errors.js";
import { watchHboneConnection, type HboneConnection } from "./hbone-connection.js";
import { acceptTls } from "./inbound-handshake.js";
import { handleStream } from "./inbound-stream.js";
import { createKeepalive } from "./keepalive.js";

export interface InboundOptions {
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
}

export interface InboundServer {
  /** Connection handler for every 15008 listener (one wildcard, or one per local workload IP). */
  readonly accept: (raw: net.Socket) => void;
  /** HBONE connections held, for the admin page and tests. */
  stats(): { connections: number; streams: number };
  /** Send GOAWAY on every session; streams in flight may finish. */
  drain(): void;
  close(): void;
}

/**
 * HBONE inbound (15008): mTLS 1.3 with ALPN h2, the certificate of the destination
 * workload chosen by the local address the connection arrived on, then HTTP/2
 * CONNECT streams, each checked, authorized and dialled to a workload of this node.
 * A connection that ends (the source agent died, its PINGs stopped) resets its streams.
 */
export function createInboundServer(ctx: ProxyContext, opts: InboundOptions = {}): InboundServer {
  const log = ctx.logger.child({ component: "inbound" });
  const conns = new Map<ServerHttp2Session, HboneConnection>();
  const pingTimeoutMs = opts.pingTimeoutMs ?? 20_000;
  // A client that vanished without a FIN would otherwise hold its streams and upstreams forever.
  const keepalive = createKeepalive({
    intervalMs: opts.pingIntervalMs ?? 10_000,
    timeoutMs: pingTimeoutMs,
    onTimeout: (session) => {
      const c = conns.get(session as ServerHttp2Session);
      const peer = describe(session);
      log.warn({ peer }, "HBONE client did not answer PING in time; closing its connection");
      const reason = new ProxyError("HBONE_KEEPALIVE_TIMEOUT", `HBONE client ${peer} did not answer a PING within ${pingTimeoutMs} ms; its connection was closed`);
      if (c) c.kill(reason);
      else session.destroy();
    },
  });
  const settings: http2.Settings = {
    maxConcurrentStreams: 200,
    initialWindowSize: ctx.streamWindowSize,
    // nghttp2 refuses bigger header blocks silently; up to this size the stream
    // handler answers 431 itself, with a log line and a metric.
    maxHeaderListSize: 256 * 1024,
    enablePush: false,
  };

  const serve = (sock: tls.TLSSocket): void => {
    const localIp = normalizeIp(sock.localAddress ?? "") ?? "";
    const ip = normalizeIp(sock.remoteAddress ?? "") ?? "?";
    const port = sock.remotePort ?? 0;
    const peer = { localIp, ip, port, identity: peerIdentity(sock), onRefused: () => undefined };
    // What tls.Server does for its own sockets once secure; without it the HTTP/2
    // session waits forever for a 'secureConnect' that only client sockets emit.
    (sock as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
    const session = http2.performServerHandshake(sock, { settings, maxSessionMemory: 64 });
    const c = watchHboneConnection(session, sock, `HBONE client ${formatHostPort(ip, port)}`);
    conns.set(session, c);
    keepalive.watch(session);
    session.once("close", () => conns.delete(session));
    session.on("error", (err) => log.debug({ err, peer: formatHostPort(ip, port) }, "HBONE session error"));
    session.once("connect", () => session.setLocalWindowSize(ctx.connectionWindowSize));
    session.on("stream", (stream, headers) => {
      c.track(stream);
      void handleStream(ctx, peer, stream, headers).catch((err: unknown) => {
        log.error({ err }, "HBONE stream handler failed");
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      });
    });
  };

  return {
    accept(raw) {
      raw.on("error", () => {});
      acceptTls(ctx, raw).then(
        (sock) => {
          if (sock) serve(sock);
        },
        (err: unknown) => {
          raw.destroy();
          log.error({ err }, "inbound TLS setup failed");
        },
      );
    },
    stats() {
      let streams = 0;
      for (const c of conns.values()) streams += c.streams.size;
      return { connections: conns.size, streams };
    },
    drain() {
      for (const s of conns.keys()) if (!s.closed) s.close();
    },
    close() {
      keepalive.close();
      for (const s of conns.keys()) s.destroy();
    },
  };
}

function describe(session: http2.Http2Session): string {
  const s = session.socket;
  return s ? formatHostPort(normalizeIp(s.remoteAddress ?? "") ?? "?", s.remotePort ?? 0) : "?";
}
