import http2, { type Http2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { checkClientIdentity, peerIdentity, serverSocketOptions, type PeerIdentity } from "@zt/identity";
import { authorize, formatHostPort, normalizeIp, parseHostPort, workloadIdentity, type Workload } from "@zt/state";
import type { ProxyContext } from "./context.js";
import { dialTcp } from "./dial.js";
import { ProxyError, toProxyError } from "./errors.js";
import { createKeepalive } from "./keepalive.js";
import { fail, fillDst, newRecord, run } from "./connection.js";

const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Largest CONNECT header list served (RFC 9113 size: name + value + 32 per field). */
const MAX_HEADER_LIST_BYTES = 16 * 1024;

export interface InboundServer {
  /** Connection handler for every 15008 listener (one wildcard, or one per local workload IP). */
  readonly accept: (raw: net.Socket) => void;
  /** Send GOAWAY on every session; streams in flight may finish. */
  drain(): void;
  close(): void;
}

/**
 * HBONE inbound (15008): mTLS 1.3 with ALPN h2, the certificate of the destination
 * workload chosen by the local address the connection arrived on, then HTTP/2
 * CONNECT streams, each checked, authorized and dialled to a workload of this node.
 */
export function createInboundServer(ctx: ProxyContext, opts: { pingIntervalMs?: number; pingTimeoutMs?: number } = {}): InboundServer {
  const log = ctx.logger.child({ component: "inbound" });
  const sessions = new Set<Http2Session>();
  // A client that vanished without a FIN would otherwise hold its streams and upstreams forever.
  const keepalive = createKeepalive({
    intervalMs: opts.pingIntervalMs ?? 10_000,
    timeoutMs: opts.pingTimeoutMs ?? 20_000,
    onTimeout: (session) => {
      log.warn({ peer: session.socket?.remoteAddress }, "HBONE client did not answer PING in time; closing its connection");
      session.destroy();
    },
  });
  const h2 = http2.createServer({
    settings: {
      maxConcurrentStreams: 200,
      initialWindowSize: ctx.streamWindowSize,
      // nghttp2 refuses bigger header blocks silently; up to this size the stream
      // handler answers 431 itself, with a log line and a metric.
      maxHeaderListSize: 256 * 1024,
      enablePush: false,
    },
    maxSessionMemory: 64,
  });
  h2.on("session", (session) => {
    sessions.add(session);
    keepalive.watch(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", (err) => log.debug({ err }, "HBONE session error"));
    session.once("connect", () => session.setLocalWindowSize(ctx.connectionWindowSize));
  });
  h2.on("stream", (stream, headers) => {
    const session = stream.session;
    const socket = session?.socket as tls.TLSSocket | undefined;
    if (!socket) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    void handleStream(ctx, socket, stream, headers);
  });

  const accept = (raw: net.Socket): void => {
    raw.on("error", () => {});
    void acceptTls(ctx, raw, h2).catch((err: unknown) => {
      raw.destroy();
      log.warn({ err }, "inbound TLS setup failed");
    });
  };

  return {
    accept,
    drain() {
      for (const s of sessions) if (!s.closed) s.close();
    },
    close() {
      keepalive.close();
      for (const s of sessions) s.destroy();
    },
  };
}

async function acceptTls(ctx: ProxyContext, raw: net.Socket, h2: http2.Http2Server): Promise<void> {
  const localIp = normalizeIp(raw.localAddress ?? "") ?? "";
  const remote = formatHostPort(normalizeIp(raw.remoteAddress ?? "") ?? "?", raw.remotePort ?? 0);
  const dst = ctx.store.workloadByIp(localIp);
  const rec = newRecord(remote, formatHostPort(localIp, raw.localPort ?? 0));
  if (!dst || dst.node !== ctx.nodeName) {
    raw.destroy();
    fail(ctx, rec, new ProxyError("HBONE_NO_LOCAL_WORKLOAD", "NO_ROUTE", `HBONE connection to ${localIp}, which is not a workload of node ${ctx.nodeName}; nothing to present a certificate for`));
    return;
  }
  fillDst(rec, dst);
  let cert = ctx.certs.get(workloadIdentity(dst));
  cert ??= await ctx.certs.fetch(workloadIdentity(dst));
  // HTTP/2 carries half-close in frames; a FIN on the TCP connection ends the session.
  // (The TLS socket inherits this flag, and with it set the session would never see EOF.)
  raw.allowHalfOpen = false;
  const sock = new tls.TLSSocket(raw, serverSocketOptions(cert));
  raw.setTimeout(HANDSHAKE_TIMEOUT_MS, () => sock.destroy(new ProxyError("TLS_HANDSHAKE_TIMEOUT", "TLS_FAILURE", "TLS handshake did not finish in time")));
  raw.resume();
  sock.once("error", (err) => fail(ctx, rec, handshakeError(err, remote)));
  sock.once("secure", () => {
    raw.setTimeout(0);
    if (sock.alpnProtocol !== "h2") {
      sock.destroy();
      fail(ctx, rec, new ProxyError("ALPN_MISMATCH", "TLS_FAILURE", `HBONE client ${remote} did not negotiate ALPN h2 (got ${String(sock.alpnProtocol)})`));
      return;
    }
    const bad = checkClientIdentity(sock, ctx.trustDomain);
    if (bad) {
      sock.destroy();
      fail(ctx, rec, new ProxyError(bad.code, "TLS_FAILURE", `HBONE client ${remote} rejected: ${bad.message}`));
      return;
    }
    sock.removeAllListeners("error");
    sock.on("error", () => {});
    // What tls.Server does for its own sockets once secure; without it the HTTP/2
    // session waits forever for a 'secureConnect' that only client sockets emit.
    (sock as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
    h2.emit("connection", sock);
  });
}

async function handleStream(ctx: ProxyContext, socket: tls.TLSSocket, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
  const localIp = normalizeIp(socket.localAddress ?? "") ?? "";
  const peerAddr = formatHostPort(normalizeIp(socket.remoteAddress ?? "") ?? "?", socket.remotePort ?? 0);
  const src = identityOf(socket);
  const forwardedFor = parseForwardedFor(headers["forwarded"]);
  const rec = newRecord(forwardedFor ?? peerAddr, String(headers[":authority"] ?? ""));
  rec.security = "mutual_tls";
  rec.src = { ...rec.src, identity: src?.id };
  const srcWl = forwardedFor ? ctx.store.workloadByIp(parseHostPort(forwardedFor)?.ip ?? "") : undefined;
  if (srcWl) rec.src = { ...rec.src, workload: srcWl.workloadName, namespace: srcWl.namespace, app: srcWl.canonicalName };
  else if (src) rec.src = { ...rec.src, namespace: src.namespace };
  stream.on("error", () => {});

  const refuse = (status: number, err: ProxyError): void => {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ":status": status }, { endStream: true });
    fail(ctx, rec, err);
  };

  const size = headerListSize(headers);
  if (size > MAX_HEADER_LIST_BYTES) {
    refuse(431, new ProxyError("HBONE_HEADERS_TOO_LARGE", "BAD_REQUEST", `HBONE stream from ${peerAddr} sent ${size} bytes of headers; at most ${MAX_HEADER_LIST_BYTES} are served`));
    return;
  }
  if (headers[":method"] !== "CONNECT") {
    refuse(400, new ProxyError("HBONE_METHOD_NOT_ALLOWED", "BAD_REQUEST", `HBONE stream from ${peerAddr} used method ${String(headers[":method"])}; only CONNECT is served`));
    return;
  }
  const target = parseHostPort(String(headers[":authority"] ?? ""));
  if (!target) {
    refuse(400, new ProxyError("HBONE_BAD_AUTHORITY", "BAD_REQUEST", `HBONE CONNECT authority ${JSON.stringify(headers[":authority"])} is not ip:port`));
    return;
  }
  if (target.ip !== localIp) {
    refuse(400, new ProxyError("HBONE_AUTHORITY_MISMATCH", "BAD_REQUEST", `HBONE CONNECT to ${formatHostPort(target.ip, target.port)} arrived on ${localIp}; the authority must name the address the connection was made to (relay attempt?)`));
    return;
  }
  const dst = ctx.store.workloadByIp(target.ip);
  if (!dst || dst.node !== ctx.nodeName) {
    refuse(503, new ProxyError("HBONE_NOT_LOCAL", "NO_ROUTE", `HBONE CONNECT to ${target.ip}, which is not a workload of node ${ctx.nodeName}; this agent relays to nothing else`));
    return;
  }
  fillDst(rec, dst);
  rec.dst = { ...rec.dst, addr: formatHostPort(target.ip, target.port) };
  if (ctx.ownPorts.has(target.port)) {
    refuse(503, new ProxyError("HBONE_LOOP", "LOOP", `HBONE CONNECT to port ${target.port}, one of the agent's own ports`));
    return;
  }
  const decision = authorize(ctx.store.policiesFor(dst), {
    srcIdentity: src,
    srcIp: forwardedFor ? (parseHostPort(forwardedFor)?.ip ?? "") : (normalizeIp(socket.remoteAddress ?? "") ?? ""),
    dstIp: target.ip,
    dstPort: target.port,
  });
  if (!decision.allow) {
    refuse(401, new ProxyError("AUTHZ_DENIED", "DENY", `connection from ${src?.id ?? "unknown"} to ${dst.namespace}/${dst.name}:${target.port} denied by ${decision.policy ?? "policy"} (${decision.reason})`));
    return;
  }
  let upstream: net.Socket;
  try {
    upstream = await dialTcp(ctx.dialer, target.ip, target.port, ctx.connectTimeoutMs, verifiedSource(srcWl, src, forwardedFor));
  } catch (err) {
    refuse(503, toProxyError(err, "CONNECT"));
    return;
  }
  if (stream.destroyed || stream.closed) {
    upstream.destroy();
    fail(ctx, rec, new ProxyError("HBONE_STREAM_RESET", "RESET", "the client reset the stream before the upstream connected"));
    return;
  }
  stream.respond({ ":status": 200 });
  run(ctx, rec, upstream, stream, "sent-is-upstream-written");
}

/**
 * The source address to present to the destination pod: the `forwarded` address, but only
 * when it belongs to a workload whose identity the peer proved with its certificate; a
 * peer cannot make this agent speak from an address it does not own.
 */
export function verifiedSource(srcWl: Workload | undefined, peer: PeerIdentity | undefined, forwardedFor: string | undefined): string | undefined {
  if (!srcWl || !peer || !forwardedFor) return undefined;
  return workloadIdentity(srcWl) === peer.id ? parseHostPort(forwardedFor)?.ip : undefined;
}

function headerListSize(headers: IncomingHttpHeaders): number {
  let n = 0;
  for (const [k, v] of Object.entries(headers)) {
    for (const one of Array.isArray(v) ? v : [v ?? ""]) n += k.length + String(one).length + 32;
  }
  return n;
}

/** OpenSSL's reasons for refusing a client, in an operator's words. */
const HANDSHAKE_REASONS: Readonly<Record<string, [code: string, text: string]>> = {
  "http request": ["NOT_TLS", "sent plain HTTP to the HBONE port, which speaks only mTLS"],
  "wrong version number": ["NOT_TLS", "did not start a TLS handshake"],
  "unsupported protocol": ["TLS_VERSION_REFUSED", "offered only TLS versions below 1.3; HBONE requires TLS 1.3"],
  "no application protocol": ["ALPN_MISMATCH", "did not offer ALPN h2"],
  "peer did not return a certificate": ["CLIENT_CERT_MISSING", "presented no client certificate; HBONE requires mutual TLS"],
};

function handshakeError(err: Error & { reason?: string }, remote: string): ProxyError {
  if (err instanceof ProxyError) return err;
  const known = err.reason ? HANDSHAKE_REASONS[err.reason] : undefined;
  const [code, text] = known ?? ["TLS_FAILURE", `failed the TLS handshake: ${err.reason ?? err.message.trim()}`];
  return new ProxyError(code, "TLS_FAILURE", `HBONE client ${remote} ${text}`, { cause: err });
}

/** The client identity, parsed once per TLS connection rather than once per stream. */
const identities = new WeakMap<tls.TLSSocket, PeerIdentity | undefined>();
function identityOf(socket: tls.TLSSocket): PeerIdentity | undefined {
  if (identities.has(socket)) return identities.get(socket);
  const id = peerIdentity(socket);
  identities.set(socket, id);
  return id;
}

function parseForwardedFor(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const m = /for="?([^";,]+)"?/i.exec(s);
  const hp = m?.[1] ? parseHostPort(m[1]) : undefined;
  return hp ? formatHostPort(hp.ip, hp.port) : undefined;
}
