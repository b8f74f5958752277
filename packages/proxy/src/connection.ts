import type http2 from "node:http2";
import type net from "node:net";
import { workloadIdentity, type Workload } from "@zt/state";
import type { ProxyContext } from "./context.js";
import type { ProxyError } from "./errors.js";
import { splice } from "./splice.js";
import type { ConnectionRecord } from "./types.js";

/** Hand the pair to splice, observe open/close, count bytes from the TCP side. */
export function run(
  ctx: ProxyContext,
  rec: ConnectionRecord,
  tcp: net.Socket,
  peer: net.Socket | http2.Http2Stream,
  counting: "sent-is-upstream-written" | "sent-is-client-read",
): void {
  ctx.observer.opened(rec);
  // Bytes the socket carried before the relay (a SOCKS5 handshake) are not the connection's payload.
  const readBase = tcp.bytesRead;
  const writtenBase = tcp.bytesWritten;
  const handle = { destroy: () => tcp.resetAndDestroy() };
  ctx.live.add(handle);
  splice(tcp, peer, (outcome) => {
    ctx.live.delete(handle);
    if (counting === "sent-is-upstream-written") {
      rec.bytesSent = tcp.bytesWritten - writtenBase;
      rec.bytesRecv = tcp.bytesRead - readBase;
    } else {
      rec.bytesSent = tcp.bytesRead - readBase;
      rec.bytesRecv = tcp.bytesWritten - writtenBase;
    }
    if (outcome.reset) {
      rec.flag = rec.flag === "-" ? "RESET" : rec.flag;
      const e = outcome.error;
      rec.error = { code: "CONNECTION_RESET", message: e ? e.message : "a side ended abruptly" };
    }
    ctx.observer.closed(rec);
  });
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
