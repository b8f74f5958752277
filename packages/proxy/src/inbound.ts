import http2, { type ServerHttp2Session } from "node:http2";
import type net from "node:net";
import type tls from "node:tls";
import { peerIdentity } from "@zt/identity";
import { formatHostPort, normalizeIp, workloadIdentity } from "@zt/state";
import type { ProxyContext } from "./context.js";
import { ProxyError } from "./errors.js";
import { watchHboneConnection, type HboneConnection } from "./hbone-connection.js";
import { acceptTls } from "./inbound-handshake.js";
import { handleStream, type InboundPeer } from "./inbound-stream.js";
import { fail, newRecord } from "./connection.js";
import { createPeerLimits, type PeerLimits, type PeerLimitsOptions } from "./peer-limits.js";
import { createKeepalive } from "./keepalive.js";
import { Unproven } from "./listener.js";

export interface InboundOptions {
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  readonly limits?: PeerLimitsOptions;
  /** SHARED_PEER_SLOTS Int32 slots of shared memory: the per-identity caps hold across the process's workers. */
  readonly sharedPeerCounts?: Int32Array;
  /** Close (GOAWAY) a connection that has had no stream for this long; default 10 minutes. */
  readonly idleTimeoutMs?: number;
}

/** Streams refused as misuse on one connection before it gets GOAWAY. */
const MAX_MISUSED_STREAMS = 100;
const MISUSE: ReadonlySet<string> = new Set(["HBONE_HEADERS_TOO_LARGE", "HBONE_METHOD_NOT_ALLOWED", "HBONE_BAD_AUTHORITY", "HBONE_AUTHORITY_MISMATCH", "HBONE_NOT_LOCAL", "HBONE_LOOP", "PEER_STREAM_LIMIT"]);

export interface InboundServer {
  /** Connection handler for every 15008 listener (one wildcard, or one per local workload IP). */
  readonly accept: (raw: net.Socket) => void;
  /** Connections still in their TLS handshake: the oldest makes room when the listener is full. */
  readonly unproven: Unproven;
  /** HBONE connections held, for the admin page and tests. */
  stats(): { connections: number; streams: number };
  /** What each peer identity holds. */
  readonly limits: PeerLimits;
  /** Send GOAWAY on every session; streams in flight may finish. */
  drain(): void;
  close(): void;
}

/**
 * HBONE inbound (15008): mTLS 1.3 with ALPN h2, the certificate of the destination
 * workload chosen by the local address the connection arrived on, then HTTP/2
 * CONNECT streams, each checked, authorized and dialled to a workload of this node.
 * A connection that ends (the source agent died, its PINGs stopped) resets its streams.
 * A connection whose address stops being its workload's (see `stale`) is told GOAWAY.
 */
export function createInboundServer(ctx: ProxyContext, opts: InboundOptions = {}): InboundServer {
  const log = ctx.logger.child({ component: "inbound" });
  const conns = new Map<ServerHttp2Session, HboneConnection>();
  /** The local address each connection arrived on, and the identity whose certificate it was shown. */
  const madeTo = new Map<ServerHttp2Session, { readonly localIp: string; readonly presented: string }>();
  const limits = createPeerLimits(opts.limits ?? { maxConnectionsPerIdentity: 1024, maxStreamsPerIdentity: 2048 }, opts.sharedPeerCounts);
  const pingTimeoutMs = opts.pingTimeoutMs ?? 20_000;
  // A client that vanished without a FIN would otherwise hold its streams and upstreams forever.
  const keepalive = createKeepalive({
    intervalMs: opts.pingIntervalMs ?? 10_000,
    timeoutMs: pingTimeoutMs,
    onTimeout: (session, stalled) => {
      const c = conns.get(session as ServerHttp2Session);
      const peer = describe(session);
      log.warn({ peer, stalled }, "HBONE client did not answer PING in time; closing its connection");
      const reason = stalled
        ? new ProxyError("HBONE_STALLED", `the PING to HBONE client ${peer} never left in ${pingTimeoutMs} ms: the client stopped reading, or the HTTP/2 layer stopped serving the connection after a protocol error (e.g. a header field over 64 KB: COMPRESSION_ERROR); its connection was closed`)
        : new ProxyError("HBONE_KEEPALIVE_TIMEOUT", `HBONE client ${peer} did not answer a PING within ${pingTimeoutMs} ms; its connection was closed`);
      if (!c) session.destroy();
      else if (stalled) c.broken(reason);
      else c.kill(reason);
    },
    onFault: ctx.onFault,
  });
  const settings: http2.Settings = {
    maxConcurrentStreams: 200,
    initialWindowSize: ctx.streamWindowSize,
    // nghttp2 refuses bigger header blocks silently; up to this size the stream
    // handler answers 431 itself, with a log line and a metric.
    maxHeaderListSize: 256 * 1024,
    enablePush: false,
  };

  // One coarse timer for every connection: a peer holding connections it never uses
  // (answering PINGs, opening no stream) is told to go away.
  const idleTimeoutMs = opts.idleTimeoutMs ?? 600_000;
  let idleTimer: NodeJS.Timeout | undefined;
  const sweepIdle = (): void => {
    const now = Date.now();
    for (const [session, c] of conns) {
      if (c.streams.size > 0 || session.closed || now - c.idleSince < idleTimeoutMs) continue;
      try {
        log.debug({ peer: describe(session) }, "closing an idle HBONE connection");
        c.close();
      } catch (err) {
        ctx.onFault("inbound idle sweep", err);
      }
    }
    if (conns.size === 0 && idleTimer) {
      clearInterval(idleTimer);
      idleTimer = undefined;
    }
  };

  // A connection is made to one workload of this node, with that workload's certificate.
  // Once its address is no longer that (the pod went to another node keeping its IP, or a
  // newer pod of another identity took the IP over), the client's pool would go on sending
  // it streams: refused one by one (HBONE_NOT_LOCAL), or served to a workload other than
  // the one the client verified. Why it is stale, or undefined.
  const stale = (to: { readonly localIp: string; readonly presented: string }): string | undefined => {
    const w = ctx.store.workloadByIp(to.localIp);
    if (!w || w.node !== ctx.nodeName) return `${to.localIp} is no longer a workload of node ${ctx.nodeName}`;
    const id = workloadIdentity(w);
    return id === to.presented ? undefined : `${to.localIp} is now ${w.namespace}/${w.name}'s (${id}), not ${to.presented}'s`;
  };
  // GOAWAY: streams in flight finish; the client's next stream goes on a fresh connection,
  // to wherever the address is served now and with the certificate of whoever owns it.
  const goAwayIfStale = (sessions: Iterable<ServerHttp2Session>): void => {
    const told = new Map<string, number>(); // why -> connections
    for (const session of sessions) {
      const to = madeTo.get(session);
      const why = !to || session.closed ? undefined : stale(to);
      if (!why) continue;
      conns.get(session)?.close();
      told.set(why, (told.get(why) ?? 0) + 1);
    }
    for (const [why, n] of told) log.info({ connections: n }, `${why}: GOAWAY to the ${n} HBONE connection(s) made to it; their clients reconnect`);
  };
  const unsubscribe = ctx.store.onChange(() => {
    try {
      goAwayIfStale([...madeTo.keys()]);
    } catch (err) {
      ctx.onFault("inbound stale connections", err);
    }
  });

  const serve = (sock: tls.TLSSocket, presented: string): ServerHttp2Session | undefined => {
    const localIp = normalizeIp(sock.localAddress ?? "") ?? "";
    const ip = normalizeIp(sock.remoteAddress ?? "") ?? "?";
    const port = sock.remotePort ?? 0;
    const addr = formatHostPort(ip, port);
    const identity = peerIdentity(sock);
    // checkClientIdentity guaranteed a SPIFFE identity of our trust domain.
    const id = identity?.id ?? addr;
    if (!limits.openConnection(id)) {
      refuseConnection(ctx, sock, new ProxyError("PEER_CONNECTION_LIMIT", `HBONE client ${addr} (${id}) already holds ${limits.options.maxConnectionsPerIdentity} connections, the most one identity may hold (HBONE_MAX_CONNECTIONS_PER_IDENTITY)`), id);
      // An HTTP/2 refusal the client can name (GOAWAY ENHANCE_YOUR_CALM), then the socket goes.
      (sock as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
      const refused = http2.performServerHandshake(sock, { settings: { maxConcurrentStreams: 0 } });
      refused.on("error", () => {});
      refused.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      refused.close();
      sock.setTimeout(1000, () => sock.destroy());
      return undefined;
    }
    // What tls.Server does for its own sockets once secure; without it the HTTP/2
    // session waits forever for a 'secureConnect' that only client sockets emit.
    (sock as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
    const window = ctx.receiveBudget.initialWindow();
    const session = http2.performServerHandshake(sock, { settings: { ...settings, initialWindowSize: window }, maxSessionMemory: 64 });
    const c = watchHboneConnection(session, sock, `HBONE client ${addr}`, { of: ctx.receiveBudget, window }, (err) => refuseConnection(ctx, sock, err, identity?.id));
    let misused = 0;
    const peer: InboundPeer = {
      localIp,
      ip,
      port,
      identity,
      onRefused: (err) => {
        limits.countRefused(id);
        // A peer that keeps sending streams no agent would serve (malformed, relays, loops:
        // each cheap for it once its headers sit in the HPACK table) may open no more on
        // this connection. Denials and failed dials are the destination's answer, not misuse.
        if (!MISUSE.has(err.code) || ++misused !== MAX_MISUSED_STREAMS || session.closed) return;
        log.warn({ peer: addr, identity: id, misused }, "HBONE client sent too many streams no agent would serve; GOAWAY, it may open no more on this connection");
        c.close(http2.constants.NGHTTP2_NO_ERROR);
      },
      onReset: () => limits.countReset(id),
      lost: () => c.reason,
    };
    conns.set(session, c);
    madeTo.set(session, { localIp, presented });
    keepalive.watch(session);
    if (!idleTimer) {
      idleTimer = setInterval(sweepIdle, Math.min(1000, idleTimeoutMs));
      idleTimer.unref();
    }
    session.once("close", () => {
      conns.delete(session);
      madeTo.delete(session);
      limits.closeConnection(id);
    });
    session.on("error", (err) => log.debug({ err, peer: addr }, "HBONE session error"));
    session.once("connect", () => session.setLocalWindowSize(ctx.connectionWindowSize));
    const streamClosed = (): void => limits.closeStream(id);
    session.on("stream", (stream, headers) => {
      c.track(stream);
      if (!limits.openStream(id)) {
        const err = new ProxyError("PEER_STREAM_LIMIT", `HBONE client ${addr} (${id}) already holds ${limits.options.maxStreamsPerIdentity} streams, the most one identity may hold (HBONE_MAX_STREAMS_PER_IDENTITY)`);
        stream.on("error", () => {});
        stream.respond({ ":status": err.spec.hbone ?? 503 }, { endStream: true });
        peer.onRefused(err);
        return refuseConnection(ctx, sock, err, identity?.id);
      }
      stream.on("close", streamClosed);
      handleStream(ctx, peer, stream, headers).catch((err: unknown) => {
        ctx.onFault("inbound HBONE stream", err);
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      });
    });
    return session;
  };

  const unproven = new Unproven();
  return {
    limits,
    unproven,
    accept(raw) {
      raw.on("error", () => {});
      // The kernel's probes find a client host that vanished while its connection is closing
      // (after GOAWAY Node sends no more PINGs).
      raw.setKeepAlive(true, opts.pingIntervalMs ?? 10_000);
      acceptTls(ctx, raw)
        .then((accepted) => {
          unproven.done(raw);
          if (!accepted) return;
          const session = serve(accepted.sock, accepted.presented);
          // The store may have changed during the handshake.
          if (session) goAwayIfStale([session]);
        })
        .catch((err: unknown) => {
          raw.resetAndDestroy();
          ctx.onFault("inbound HBONE connection", err);
        });
    },
    stats() {
      let streams = 0;
      for (const c of conns.values()) streams += c.streams.size;
      return { connections: conns.size, streams };
    },
    drain() {
      for (const c of conns.values()) c.close();
    },
    close() {
      unsubscribe();
      keepalive.close();
      if (idleTimer) clearInterval(idleTimer);
      for (const s of conns.keys()) s.destroy();
    },
  };
}

/** Record a connection or stream refused for the peer's caps (one log line, one metric). */
function refuseConnection(ctx: ProxyContext, sock: tls.TLSSocket, err: ProxyError, identity?: string): void {
  const rec = newRecord(formatHostPort(normalizeIp(sock.remoteAddress ?? "") ?? "?", sock.remotePort ?? 0), formatHostPort(normalizeIp(sock.localAddress ?? "") ?? "?", sock.localPort ?? 0));
  rec.security = "mutual_tls";
  if (identity) rec.src = { ...rec.src, identity };
  fail(ctx, rec, err);
}

function describe(session: http2.Http2Session): string {
  const s = session.socket;
  return s ? formatHostPort(normalizeIp(s.remoteAddress ?? "") ?? "?", s.remotePort ?? 0) : "?";
}
