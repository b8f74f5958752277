import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type net from "node:net";
import type { PeerIdentity } from "@zt/identity";
import { formatHostPort, parseHostPort } from "@zt/state";
import { fail, fillDst, newRecord, run } from "./connection.js";
import type { ProxyContext } from "./context.js";
import { dialTcp } from "./dial.js";
import { admit, noteDryRun } from "./policy.js";
import { ProxyError, toProxyError } from "./errors.js";
import { verifiedSource } from "./inbound-source.js";
import { forgetCopies } from "./stream-copies.js";

/** Largest CONNECT header list served (RFC 9113 size: name + value + 32 per field). */
const MAX_HEADER_LIST_BYTES = 16 * 1024;

/** What the stream handler knows about the HBONE connection a stream arrived on. */
export interface InboundPeer {
  /** The local address the connection arrived on (a workload of this node). */
  readonly localIp: string;
  /** The peer's TCP address. */
  readonly ip: string;
  readonly port: number;
  readonly identity: PeerIdentity | undefined;
  /** Called once per stream refused before it was served, with why. */
  readonly onRefused: (err: ProxyError) => void;
  /** Called once per stream the peer reset before it was served. */
  readonly onReset: () => void;
  /** Why the HBONE connection ended, once it has. */
  readonly lost: () => ProxyError | undefined;
}

/**
 * One CONNECT stream on 15008: checked, authorized against the verified source, dialled
 * to a workload of this node, answered 200 after the upstream connect, then spliced.
 * Every refusal answers with the catalog's HBONE status and is recorded once.
 */
export async function handleStream(ctx: ProxyContext, peer: InboundPeer, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
  const peerAddr = formatHostPort(peer.ip, peer.port);
  const src = verifiedSource(ctx.store, peer.identity, headers["forwarded"], peer);
  const rec = newRecord(src.addr, String(headers[":authority"] ?? "").slice(0, 128));
  rec.security = "mutual_tls";
  rec.src = { addr: src.addr, identity: peer.identity?.id, namespace: src.workload?.namespace ?? peer.identity?.namespace, workload: src.workload?.workloadName, app: src.workload?.canonicalName };
  // Not an arrow made here: it would keep this handler's whole scope (record, headers, abort) for the stream's life.
  stream.on("error", ignore);

  const resetEarly = (): void => {
    // The stream ended with its connection, or the client reset it.
    const lost = peer.lost();
    if (lost) return fail(ctx, rec, lost);
    peer.onReset();
    fail(ctx, rec, new ProxyError("CLIENT_STREAM_RESET", "the client reset the stream before the upstream connected"));
  };
  const refuse = (err: ProxyError): void => {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ":status": err.spec.hbone ?? 503 }, { endStream: true });
    peer.onRefused(err);
    fail(ctx, rec, err);
  };

  const size = headerListSize(headers);
  if (size > MAX_HEADER_LIST_BYTES) {
    return refuse(new ProxyError("HBONE_HEADERS_TOO_LARGE", `HBONE stream from ${peerAddr} sent ${size} bytes of headers; at most ${MAX_HEADER_LIST_BYTES} are served`));
  }
  if (headers[":method"] !== "CONNECT") {
    return refuse(new ProxyError("HBONE_METHOD_NOT_ALLOWED", `HBONE stream from ${peerAddr} used method ${clip(headers[":method"])}; only CONNECT is served`));
  }
  const target = parseHostPort(String(headers[":authority"] ?? ""));
  if (!target) {
    return refuse(new ProxyError("HBONE_BAD_AUTHORITY", `HBONE CONNECT authority ${clip(headers[":authority"])} is not ip:port`));
  }
  if (target.ip !== peer.localIp) {
    return refuse(new ProxyError("HBONE_AUTHORITY_MISMATCH", `HBONE CONNECT to ${formatHostPort(target.ip, target.port)} arrived on ${peer.localIp}; the authority must name the address the connection was made to (relay attempt?)`));
  }
  const conn = { srcIdentity: peer.identity, srcIp: src.ip, dstIp: target.ip, dstPort: target.port };
  const a = admit(ctx, { listener: "hbone", node: ctx.nodeName, identity: peer.identity?.id, srcAddr: src.addr }, conn);
  if (a.dst) {
    fillDst(rec, a.dst);
    rec.dst = { ...rec.dst, addr: formatHostPort(target.ip, target.port) };
  }
  if (a.decision) noteDryRun(rec, a.decision);
  if (!a.ok) return refuse(a.refusal);
  const dst = a.dst;
  // A stream reset before its dial (rapid reset: HEADERS and RST_STREAM in one read) costs
  // no upstream connection: the dial waits for the rest of that read to be processed, and a
  // reset during the dial cancels it.
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (stream.destroyed || stream.closed) return resetEarly();
  const abort = new AbortController();
  const onClose = (): void => abort.abort();
  stream.once("close", onClose);
  let upstream: net.Socket;
  // Listed as connecting while the workload is dialled.
  ctx.connecting.add(rec);
  try {
    upstream = await dialTcp(ctx, target.ip, target.port, { srcIp: src.ip, signal: abort.signal });
  } catch (err) {
    if (abort.signal.aborted) return resetEarly();
    return refuse(toProxyError(err, "UPSTREAM_SOCKET_FAILED"));
  } finally {
    ctx.connecting.delete(rec);
    stream.off("close", onClose);
  }
  if (stream.destroyed || stream.closed) {
    upstream.resetAndDestroy();
    return resetEarly();
  }
  stream.respond({ ":status": 200 });
  forgetResponse(stream);
  run(ctx, rec, upstream, stream, "sent-is-upstream-written", { dst, conn });
}

function ignore(): void {}

/**
 * Node's copy of a stream's response headers (a dictionary-mode object with a date string of
 * its own), kept for `sentHeaders` alone, which nothing here reads. Dropped once sent.
 */
const forgetResponse = forgetCopies(["sent-headers"]);

function headerListSize(headers: IncomingHttpHeaders): number {
  let n = 0;
  for (const [k, v] of Object.entries(headers)) {
    for (const one of Array.isArray(v) ? v : [v ?? ""]) n += k.length + String(one).length + 32;
  }
  return n;
}

/** A header value for a log message: quoted, at most 64 characters. */
function clip(v: string | string[] | undefined): string {
  const s = JSON.stringify(String(v ?? ""));
  return s.length > 66 ? `${s.slice(0, 64)}…" (${String(v).length} chars)` : s;
}
