import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import type net from "node:net";
import tls from "node:tls";
import type { Logger } from "pino";
import { clientConnectOptions, type CertManager } from "@zt/identity";
import { formatHostPort } from "@zt/state";
import { ProxyError, toProxyError } from "./errors.js";
import { fdExhausted, plainDialer, type Dialer } from "./dial.js";
import { watchHboneConnection, type HboneConnection } from "./hbone-connection.js";
import { createKeepalive } from "./keepalive.js";
import { unlimitedFds, type FdBudget } from "./fd-budget.js";
import { createReceiveBudget, type ReceiveBudget } from "./receive-budget.js";
import { forgetCopies } from "./stream-copies.js";

export interface PoolKey {
  readonly srcIdentity: string;
  readonly dstIdentities: readonly string[];
  readonly hboneIp: string;
  readonly hbonePort: number;
  readonly srcIp: string;
}

export interface PoolOptions {
  readonly certs: CertManager;
  readonly logger: Logger;
  readonly maxStreamsPerConnection: number;
  readonly idleTimeoutMs: number;
  readonly streamWindowSize: number;
  readonly connectionWindowSize: number;
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** Bytes HBONE connections may hold unconsumed; default: one budget of 16 connection windows for this pool. */
  readonly receiveBudget?: ReceiveBudget;
  /** Told about anything that threw in the pool's housekeeping (it carries on). */
  readonly onFault?: (where: string, err: unknown) => void;
  /** Descriptors the data path may hold; default: no limit. */
  readonly fds?: FdBudget;
  /** Tries of a CONNECT refused unprocessed (REFUSED_STREAM), each on another connection; default 3. */
  readonly connectAttempts?: number;
  /** Opens the TCP socket under TLS (marked under capture); default net.connect. */
  readonly dialer?: Dialer;
}

interface Conn {
  readonly session: ClientHttp2Session;
  readonly key: string;
  readonly hbone: HboneConnection;
  /** Streams reserved or open; a slot is reserved before its stream exists. */
  active: number;
  dead: boolean;
  /** Its streams' 'close' listener (one for all of them). */
  readonly released: () => void;
}

interface Entry {
  /** "ip:port" of the HBONE peer these connections go to. */
  readonly peer: string;
  readonly conns: Conn[];
  dialing: Promise<Conn> | undefined;
}

export interface HbonePool {
  /** Open one CONNECT stream; resolves after the peer answered 200 (or rejects after connectTimeoutMs). */
  connect(key: PoolKey, authority: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream>;
  /** Connections held, for the admin page and tests. */
  stats(): { connections: number; streams: number; keys: number };
  /** Connections and streams held per HBONE peer ("ip:15008"), for the admin's status. */
  peers(): Record<string, { connections: number; streams: number }>;
  /**
   * Close every connection once its streams end. A connect during the drain comes from a
   * connection the agent accepted before it stopped listening, one of its own to finish: it
   * is served, on a fresh connection that closes when idle.
   */
  drain(): void;
  /** Destroy everything now; later connects fail with DRAINING. */
  close(): void;
}

/**
 * The outbound HBONE pool. One entry per key (source identity, expected destination
 * identities, destination address, source IP); one dial per key at a time; at most
 * `maxStreamsPerConnection` streams on a connection; idle connections released after
 * `idleTimeoutMs`; PING keepalive. Shared coarse timers do the housekeeping (none per connection).
 */
export function createHbonePool(opts: PoolOptions): HbonePool {
  const pingIntervalMs = opts.pingIntervalMs ?? 10_000;
  const pingTimeoutMs = opts.pingTimeoutMs ?? 20_000;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const budget = opts.receiveBudget ?? createReceiveBudget({ streamWindow: opts.streamWindowSize, sessionBytes: opts.connectionWindowSize, totalBytes: 16 * opts.connectionWindowSize });
  const entries = new Map<string, Entry>();
  const bySession = new WeakMap<ClientHttp2Session, Conn>();
  const keepalive = createKeepalive({
    intervalMs: pingIntervalMs,
    timeoutMs: pingTimeoutMs,
    onTimeout: (session, stalled) => {
      const c = bySession.get(session as ClientHttp2Session);
      const peer = c?.key.split("|")[2] ?? "the peer";
      log.warn({ peer, stalled }, "HBONE peer did not answer PING in time; closing the connection");
      const reason = stalled
        ? new ProxyError("HBONE_STALLED", `the PING to the destination's agent at ${peer} never left in ${pingTimeoutMs} ms: it stopped reading, or the HTTP/2 layer stopped serving the connection after a protocol error; its HBONE connection was closed`)
        : new ProxyError("HBONE_KEEPALIVE_TIMEOUT", `the destination's agent at ${peer} did not answer a PING within ${pingTimeoutMs} ms; its HBONE connection was closed`);
      if (!c) session.destroy();
      else if (stalled) c.hbone.broken(reason);
      else c.hbone.kill(reason);
    },
    ...(opts.onFault ? { onFault: opts.onFault } : {}),
  });
  let timer: NodeJS.Timeout | undefined;
  let draining = false;
  let closed = false;
  /** Every session still open, those retired from the pool (closing once their streams end) included. */
  const open = new Set<ClientHttp2Session>();

  const log = opts.logger.child({ component: "pool" });

  function keyOf(k: PoolKey): string {
    const ids = k.dstIdentities.length > 1 ? [...k.dstIdentities].sort().join(",") : (k.dstIdentities[0] ?? "");
    return `${k.srcIdentity}|${ids}|${formatHostPort(k.hboneIp, k.hbonePort)}|${k.srcIp}`;
  }

  function ensureTimer(): void {
    if (timer || entries.size === 0) return;
    timer = setInterval(sweep, 1000);
    timer.unref();
  }

  function sweep(): void {
    try {
      releaseIdle();
    } catch (err) {
      opts.onFault?.("pool idle sweep", err);
    }
  }

  function releaseIdle(): void {
    const now = Date.now();
    for (const [key, entry] of entries) {
      for (const c of [...entry.conns]) {
        if (c.dead) continue;
        if (c.active === 0 && now - c.hbone.idleSince >= opts.idleTimeoutMs) {
          log.debug({ key }, "releasing idle HBONE connection");
          retire(c, false);
          continue;
        }
      }
      if (entry.conns.length === 0 && !entry.dialing) entries.delete(key);
    }
    if (entries.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  }

  function remove(c: Conn): void {
    c.dead = true;
    const entry = entries.get(c.key);
    if (!entry) return;
    const i = entry.conns.indexOf(c);
    if (i >= 0) entry.conns.splice(i, 1);
    if (entry.conns.length === 0 && !entry.dialing) entries.delete(c.key);
  }

  function retire(c: Conn, hard: boolean): void {
    remove(c);
    if (hard) c.hbone.kill(new ProxyError("DRAINING", "the agent shut down while the stream was open"));
    else c.hbone.close();
  }

  async function dial(k: PoolKey, key: string): Promise<Conn> {
    const cert = await opts.certs.fetch(k.srcIdentity);
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      let tcp: net.Socket;
      const fds = opts.fds ?? unlimitedFds;
      if (!fds.claim()) return reject(fdExhausted(fds));
      try {
        tcp = (opts.dialer ?? plainDialer)(k.hboneIp, k.hbonePort);
      } catch (err) {
        fds.giveBack();
        reject(toProxyError(err, "UPSTREAM_SOCKET_FAILED"));
        return;
      }
      fds.held(tcp);
      // The kernel's probes find a peer host that vanished while this connection is closing
      // (after GOAWAY Node sends no more PINGs).
      tcp.setKeepAlive(true, pingIntervalMs);
      // HTTP/2 carries half-close in frames; a FIN on the HBONE connection ends it (the TLS
      // socket inherits this flag: left half-open, a peer's FIN would never end the session).
      tcp.allowHalfOpen = false;
      const s = tls.connect({ socket: tcp, ...clientConnectOptions(cert, k.dstIdentities) });
      const timeout = setTimeout(() => {
        s.destroy();
        reject(new ProxyError("HBONE_CONNECT_TIMEOUT", `HBONE connect to ${formatHostPort(k.hboneIp, k.hbonePort)} timed out (maybe a NetworkPolicy is blocking HBONE port ${k.hbonePort})`));
      }, connectTimeoutMs);
      s.once("secureConnect", () => {
        clearTimeout(timeout);
        s.removeListener("error", onError);
        // Until the HTTP/2 session owns the socket, an error must not go unhandled.
        s.on("error", () => {});
        if (s.alpnProtocol !== "h2") {
          s.destroy();
          reject(new ProxyError("TLS_FAILURE", `HBONE peer ${formatHostPort(k.hboneIp, k.hbonePort)} did not negotiate ALPN h2`));
          return;
        }
        resolve(s);
      });
      const onError = (err: Error): void => {
        clearTimeout(timeout);
        reject(toProxyError(err));
      };
      s.once("error", onError);
    });
    socket.setNoDelay(true);
    const peer = formatHostPort(k.hboneIp, k.hbonePort);
    const window = budget.initialWindow();
    const session = http2.connect(`https://${peer}`, {
      createConnection: () => socket,
      settings: { initialWindowSize: window, enablePush: false },
    });
    const c: Conn = { session, key, hbone: watchHboneConnection(session, socket, `the destination's agent at ${peer}`, { of: budget, window }, (err) => log.warn({ code: err.code, peer }, err.message)), active: 0, dead: false, released: () => release(c) };
    bySession.set(session, c);
    keepalive.watch(session);
    session.once("connect", () => {
      session.setLocalWindowSize(opts.connectionWindowSize);
    });
    session.on("error", (err) => log.debug({ err, key }, "HBONE connection error"));
    session.on("goaway", () => remove(c));
    open.add(session);
    session.once("close", () => {
      open.delete(session);
      remove(c);
    });
    return c;
  }

  async function acquire(k: PoolKey): Promise<Conn> {
    const key = keyOf(k);
    for (;;) {
      if (closed) throw new ProxyError("DRAINING", "the agent is shutting down and opens no new HBONE streams");
      let entry = entries.get(key);
      if (!entry) {
        entry = { peer: formatHostPort(k.hboneIp, k.hbonePort), conns: [], dialing: undefined };
        entries.set(key, entry);
        ensureTimer();
      }
      const free = entry.conns.find((c) => !c.dead && c.active < opts.maxStreamsPerConnection && !c.session.closed && !c.session.destroyed);
      if (free) {
        // Reserve the slot now: callers woken by the same dial must not all pick this connection.
        free.active++;
        return free;
      }
      if (entry.dialing) {
        await entry.dialing;
        continue;
      }
      const e = entry;
      e.dialing = dial(k, key).then(
        (c) => {
          e.dialing = undefined;
          e.conns.push(c);
          return c;
        },
        (err: unknown) => {
          e.dialing = undefined;
          if (e.conns.length === 0) entries.delete(key);
          throw err;
        },
      );
      await e.dialing;
    }
  }

  function release(c: Conn): void {
    c.active--;
    if (c.active === 0 && draining && !c.dead) retire(c, false);
  }

  /**
   * A CONNECT refused unprocessed (REFUSED_STREAM: the peer's GOAWAY overtook it, as when the
   * destination agent drains during an upgrade) is safe to retry (RFC 9113 §8.7); the
   * connection that refused it has left the pool, so the retry opens or picks another.
   */
  async function connect(k: PoolKey, authority: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await connectOnce(k, authority, headers);
      } catch (err) {
        if (!(err instanceof ProxyError && err.code === "HBONE_STREAM_REFUSED") || attempt >= (opts.connectAttempts ?? 3)) throw err;
        log.debug({ key: keyOf(k), attempt }, "HBONE stream refused unprocessed; retrying on another connection");
      }
    }
  }

  async function connectOnce(k: PoolKey, authority: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    const c = await acquire(k);
    let stream: ClientHttp2Stream;
    try {
      stream = c.session.request({ ...headers, ":method": "CONNECT", ":authority": authority }, { endStream: false });
    } catch (err) {
      release(c);
      throw toProxyError(err);
    }
    c.hbone.track(stream);
    // The caller attaches its own listener once it has the stream; until then (and if it
    // never does) an error that ends the stream must not go unhandled.
    stream.on("error", ignore);
    stream.on("close", c.released);
    // What waits for the answer goes once it came: nothing of it stays on a stream that lives on.
    return await new Promise<ClientHttp2Stream>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        stream.removeListener("error", onError);
        stream.removeListener("close", onClose);
        stream.removeListener("response", onResponse);
      };
      // Node reports REFUSED_STREAM as ERR_HTTP2_STREAM_ERROR, which toProxyError names HBONE_STREAM_REFUSED.
      const onError = (err: Error): void => {
        settle();
        reject(toProxyError(err));
      };
      const onClose = (): void => {
        settle();
        reject(
          stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM
            ? new ProxyError("HBONE_STREAM_REFUSED", `HBONE stream to ${authority} was refused unprocessed (REFUSED_STREAM)`)
            : new ProxyError("HBONE_STREAM_RESET", `HBONE stream to ${authority} was reset before an answer (code ${stream.rstCode})`),
        );
      };
      const onResponse = (h: http2.IncomingHttpHeaders): void => {
        settle();
        const status = Number(h[":status"]);
        if (status === 200) {
          forgetRequest(stream);
          return resolve(stream);
        }
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(statusError(status, authority));
      };
      const timer = setTimeout(() => {
        settle();
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new ProxyError("HBONE_CONNECT_TIMEOUT", `no answer to CONNECT ${authority} within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      stream.on("error", onError);
      stream.on("close", onClose);
      stream.on("response", onResponse);
    });
  }

  return {
    connect,
    stats() {
      let connections = 0;
      let streams = 0;
      for (const e of entries.values()) {
        connections += e.conns.length;
        for (const c of e.conns) streams += c.active;
      }
      return { connections, streams, keys: entries.size };
    },
    peers() {
      const out: Record<string, { connections: number; streams: number }> = {};
      for (const e of entries.values()) {
        if (e.conns.length === 0) continue;
        const peer = (out[e.peer] ??= { connections: 0, streams: 0 });
        peer.connections += e.conns.length;
        for (const c of e.conns) peer.streams += c.active;
      }
      return out;
    },
    drain() {
      draining = true;
      for (const e of entries.values()) for (const c of [...e.conns]) retire(c, false);
    },
    close() {
      draining = true;
      closed = true;
      // Every stream first gets RST_STREAM(CANCEL): on a connection whose peer's GOAWAY refused
      // queued streams, the reset session.destroy() sends (another code) makes Node 20's nghttp2
      // spin forever (found while replacing agents under load; the CANCEL path does not).
      for (const s of open) for (const st of bySession.get(s)?.hbone.streams ?? []) if (!st.closed) st.close(http2.constants.NGHTTP2_CANCEL);
      for (const e of entries.values()) for (const c of [...e.conns]) retire(c, true);
      entries.clear();
      // Retired ones too: a stream still on one (a drain that ran out) is reset, not left behind.
      for (const s of [...open]) s.destroy();
      keepalive.close();
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}

function ignore(): void {}

/**
 * Node's copies of a client stream's request headers (forwarded, baggage, traceparent) and its
 * origin string, read only for a 421 answer, which a CONNECT answered 200 can no longer get:
 * about 1 KiB per idle connection. Dropped once answered.
 */
const forgetRequest = forgetCopies(["sent-headers", "origin"]);

function statusError(status: number, authority: string): ProxyError {
  switch (status) {
    case 401:
    case 403:
      return new ProxyError("HBONE_DENIED", `the destination's agent denied ${authority} by policy (HTTP ${status})`);
    case 429:
      return new ProxyError("HBONE_OVERLOADED", `the destination's agent refused ${authority}: this source holds all the streams or connections it may (HTTP 429)`);
    case 400:
      return new ProxyError("HBONE_BAD_REQUEST", `the destination's agent rejected the CONNECT to ${authority} as malformed (HTTP 400)`);
    default:
      return new ProxyError("HBONE_UPSTREAM_FAILED", `the destination's agent could not reach ${authority} (HTTP ${status})`);
  }
}
