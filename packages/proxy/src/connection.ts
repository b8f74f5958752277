import type http2 from "node:http2";
import type net from "node:net";
import { workloadIdentity, type AuthzConnection, type Workload } from "@zt/state";
import type { LiveConnection, ProxyContext } from "./context.js";
import { ProxyError, toProxyError } from "./errors.js";
import { decide } from "./policy.js";
import { splice, type SpliceOutcome } from "./splice.js";
import type { ConnectionRecord, ConnectionSnapshot, ConnectionState } from "./types.js";

/** Hand the pair to splice, observe open/close, count bytes from the TCP side. */
export function run(
  ctx: ProxyContext,
  rec: ConnectionRecord,
  tcp: net.Socket,
  peer: net.Socket | http2.Http2Stream,
  counting: "sent-is-upstream-written" | "sent-is-client-read",
  /** Inbound: what authorization decided on, so that a change of policies re-decides it. */
  authz?: InboundAuthz,
): void {
  ctx.observer.opened(rec);
  const relayed = new Relayed(ctx, rec, tcp, peer, counting, authz);
  ctx.live.add(relayed);
  resetIfAgentDies(ctx, tcp);
  if (!("rstCode" in peer)) resetIfAgentDies(ctx, peer);
  splice(tcp, peer, relayed);
}

/** The destination workload and the connection as authorization saw them when it was let in. */
export interface InboundAuthz {
  readonly dst: Workload;
  readonly conn: AuthzConnection;
}

/** One relayed connection: in the live set (the drain may cut it) until splice says it ended. One object, no closures. */
class Relayed implements LiveConnection {
  // Bytes the socket carried before the relay (a SOCKS5 handshake) are not the connection's payload.
  private readonly readBase: number;
  private readonly writtenBase: number;
  /** The agent cut what was still open when its drain window ended: that is why, not a reset by the other side. */
  private cut: ProxyError | undefined;

  constructor(
    private readonly ctx: ProxyContext,
    readonly rec: ConnectionRecord,
    private readonly tcp: net.Socket,
    private readonly peer: net.Socket | http2.Http2Stream,
    private readonly counting: "sent-is-upstream-written" | "sent-is-client-read",
    private readonly authz: InboundAuthz | undefined,
  ) {
    this.readBase = tcp.bytesRead;
    this.writtenBase = tcp.bytesWritten;
  }

  destroy(): void {
    this.cut = new ProxyError("DRAINING", "the agent's drain window (DRAIN_TIMEOUT) ended with the connection still open: reset");
    this.tcp.resetAndDestroy();
  }

  /**
   * The policies changed: decide again, on the destination as the store now has it. Denied
   * now, the connection is reset at both ends (as Istio's ztunnel does), its line naming the
   * policy; allowed, it is left alone.
   */
  reauthorize(): void {
    const a = this.authz;
    if (!a || this.cut) return;
    const dst = this.ctx.store.workloadByUid(a.dst.uid) ?? a.dst;
    const d = decide(this.ctx, dst, a.conn);
    if (d.allow) return;
    this.cut = new ProxyError("AUTHZ_DENIED", `connection closed: the policies changed and now deny it (${d.policy ?? "no policy allows it"}, ${d.reason})`);
    this.tcp.resetAndDestroy();
  }

  /** Read when the admin asks: the sockets' own counters, nothing kept per chunk. */
  snapshot(): ConnectionSnapshot {
    const { tcp, peer } = this;
    const read = tcp.bytesRead - this.readBase;
    const written = tcp.bytesWritten - this.writtenBase;
    const upstreamWritten = this.counting === "sent-is-upstream-written";
    // One direction ended: a FIN (or END_STREAM) was read on one side, and passed on.
    const state = tcp.readableEnded || peer.readableEnded ? "half-closed" : "open";
    return snapshotOf(this.rec, state, upstreamWritten ? written : read, upstreamWritten ? read : written);
  }

  spliced(outcome: SpliceOutcome): void {
    const { ctx, rec, tcp } = this;
    ctx.live.delete(this);
    if (this.counting === "sent-is-upstream-written") {
      rec.bytesSent = tcp.bytesWritten - this.writtenBase;
      rec.bytesRecv = tcp.bytesRead - this.readBase;
    } else {
      rec.bytesSent = tcp.bytesRead - this.readBase;
      rec.bytesRecv = tcp.bytesWritten - this.writtenBase;
    }
    if (outcome.reset) {
      const err = this.cut ?? endError(outcome, this.peer);
      rec.flag = rec.flag === "-" ? err.flag : rec.flag;
      rec.error = { code: err.code, message: err.message };
    }
    ctx.observer.closed(rec);
  }
}

const RST_NAMES: Readonly<Record<number, string>> = { 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM" };
const PROTOCOL_RESETS = new Set([1, 3, 5, 6, 9]);

/**
 * While the connection is open, the agent's death resets it (SO_LINGER 0: the kernel closes
 * the socket for the dead process). Once both directions ended cleanly the option goes,
 * before Node closes the socket: a reset would discard what the peer has not acknowledged.
 */
function resetIfAgentDies(ctx: ProxyContext, s: net.Socket): void {
  const set = ctx.lingerReset;
  if (!set) return;
  try {
    set(s, true);
  } catch {
    return; // already closed
  }
  const settle = settlers.get(set) ?? lingerOff(set);
  s.on("end", settle);
  s.on("finish", settle);
}

/** Per setter, one listener for every socket (its `this`): no closure per connection. */
const settlers = new WeakMap<NonNullable<ProxyContext["lingerReset"]>, (this: net.Socket) => void>();

function lingerOff(set: NonNullable<ProxyContext["lingerReset"]>): (this: net.Socket) => void {
  const settle = function (this: net.Socket): void {
    if (!this.readableEnded || !this.writableFinished || this.destroyed) return;
    try {
      set(this, false);
    } catch {
      // closed meanwhile
    }
  };
  settlers.set(set, settle);
  return settle;
}

/**
 * Why an open connection ended abruptly. An error of the HBONE stream that is not ours
 * (a TLS or protocol failure Node reported on the session) means the HBONE connection
 * was lost under it; a reset by the other side is a reset.
 */
function endError(o: SpliceOutcome, peer: net.Socket | http2.Http2Stream): ProxyError {
  const byRst = !o.error || (o.error as NodeJS.ErrnoException).code === "ERR_HTTP2_STREAM_ERROR";
  if (byRst && o.rstCode !== undefined) {
    const name = RST_NAMES[o.rstCode] ?? `code ${o.rstCode}`;
    // nghttp2 resets a stream itself when the peer breaks the protocol on it (data past the stream's window).
    if (PROTOCOL_RESETS.has(o.rstCode)) return new ProxyError("HBONE_PROTOCOL_ERROR", `the HBONE stream was reset with ${name}: the peer broke the HTTP/2 protocol on it`);
    return new ProxyError("CONNECTION_RESET", `the other side reset the connection (RST_STREAM ${name})`);
  }
  if (!o.error) return new ProxyError("CONNECTION_RESET", "a side ended abruptly");
  if (o.error instanceof ProxyError) return o.error;
  const code = (o.error as NodeJS.ErrnoException).code;
  if (o.errorSide === "peer" && "rstCode" in peer) {
    if (code === "ERR_HTTP2_STREAM_ERROR") return new ProxyError("CONNECTION_RESET", `the other side reset the connection (${o.error.message})`, { cause: o.error });
    const why = toProxyError(o.error);
    return new ProxyError(why.code === "HBONE_PROTOCOL_ERROR" ? "HBONE_PROTOCOL_ERROR" : "HBONE_CONNECTION_LOST", `the HBONE connection failed under the stream: ${why.message}`, { cause: o.error });
  }
  const why = toProxyError(o.error, "CONNECTION_RESET");
  // An open connection that times out or loses its route was reset under us; the dial-time codes would say "connect".
  if (why.flag === "CONNECT") return new ProxyError("CONNECTION_RESET", `the connection was lost (${code ?? why.code}): ${o.error.message}`, { cause: o.error });
  return why;
}

/** A record as the admin lists it (a connection still dialling is `snapshotOf(rec, "connecting", 0, 0)`). */
export function snapshotOf(rec: ConnectionRecord, state: ConnectionState, bytesSent: number, bytesRecv: number): ConnectionSnapshot {
  return {
    direction: rec.direction,
    listener: rec.listener,
    state,
    src: rec.src,
    dst: rec.dst,
    service: rec.dstService ?? null,
    hboneAddr: rec.dstHboneAddr ?? null,
    security: rec.security,
    bytesSent,
    bytesRecv,
    startMs: rec.startMs,
  };
}

export function newRecord(srcAddr: string, dstAddr: string, direction: "inbound" | "outbound" = "inbound", listener: ConnectionRecord["listener"] = "hbone"): ConnectionRecord {
  return { direction, listener, startMs: Date.now(), src: { addr: srcAddr }, dst: { addr: dstAddr }, security: "none", bytesSent: 0, bytesRecv: 0, flag: "-" };
}

export function fillDst(rec: ConnectionRecord, w: Workload): void {
  rec.dst = { addr: rec.dst.addr, workload: w.workloadName, namespace: w.namespace, identity: workloadIdentity(w), app: w.canonicalName };
}

export function fail(ctx: ProxyContext, rec: ConnectionRecord, err: ProxyError): void {
  if (rec.error) return;
  rec.flag = err.flag;
  rec.error = { code: err.code, message: err.message };
  ctx.observer.closed(rec);
}
