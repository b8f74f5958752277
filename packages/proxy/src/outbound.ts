/** The outbound flow: 15001 (capture) and 15080 (SOCKS5) → source → route → HBONE or passthrough → splice. */
import type { ClientHttp2Stream } from "node:http2";
import type net from "node:net";
import { formatHostPort, normalizeIp, workloadIdentity } from "@zt/state";
import { fail, fillDst, newRecord, run } from "./connection.js";
import type { ProxyContext } from "./context.js";
import { dialTcp } from "./dial.js";
import { ProxyError, toProxyError } from "./errors.js";
import { createProxyListener, lastResort, Unproven } from "./listener.js";
import { baggage, hostVip, route, traceparent, type OutboundRequest, type Route } from "./route.js";
import { readSocksRequest, replyBytes, replyFor, SocksReply } from "./socks5.js";
import type { ConnectionRecord } from "./types.js";

/** 15001: transparent outbound capture. The original destination is the accepted socket's local address. */
export function createOutboundServer(ctx: ProxyContext): net.Server {
  return createProxyListener(ctx, "outbound", (client) => {
    const req = requestOf(client, normalizeIp(client.localAddress ?? "") ?? "", client.localPort ?? 0);
    proxyOutbound(ctx, client, req, newRecord(formatHostPort(req.srcIp, req.srcPort), formatHostPort(req.dstIp, req.dstPort), "outbound", "outbound")).catch((err: unknown) => lastResort(ctx, client, "outbound connection", err));
  });
}

/** 15080: SOCKS5 CONNECT feeding the same outbound path; the source is the client's IP. */
export function createSocks5Server(ctx: ProxyContext): net.Server {
  const unproven = new Unproven();
  const serve = (client: net.Socket): void => {
    const srcIp = normalizeIp(client.remoteAddress ?? "") ?? "";
    const rec = newRecord(formatHostPort(srcIp, client.remotePort ?? 0), "-", "outbound", "socks5");
    readSocksRequest(client).then(
      (target) => {
        unproven.done(client);
        const dstIp = target.kind === "ip" ? target.ip : hostVip(ctx.store, target.host);
        if (dstIp instanceof ProxyError) {
          client.write(replyBytes(replyFor(dstIp)));
          client.destroySoon();
          fail(ctx, rec, dstIp);
          return;
        }
        const req = { ...requestOf(client, dstIp, target.port) };
        rec.dst = { addr: formatHostPort(dstIp, target.port) };
        return proxyOutbound(ctx, client, req, rec, (err) => {
          if (!client.destroyed) client.write(replyBytes(err ? replyFor(err) : SocksReply.ok));
        });
      },
      (err: unknown) => fail(ctx, rec, toProxyError(err)),
    ).catch((err: unknown) => lastResort(ctx, client, "SOCKS5 connection", err));
  };
  return createProxyListener(ctx, "socks5", serve, unproven);
}

function requestOf(client: net.Socket, dstIp: string, dstPort: number): OutboundRequest {
  return { srcIp: normalizeIp(client.remoteAddress ?? "") ?? "", srcPort: client.remotePort ?? 0, dstIp, dstPort };
}

async function proxyOutbound(ctx: ProxyContext, client: net.Socket, req: OutboundRequest, rec: ConnectionRecord, reply?: (err?: ProxyError) => void): Promise<void> {
  client.on("error", ignore);
  // Listed as connecting until relayed (run() puts it in the live set) or refused.
  ctx.connecting.add(rec);
  try {
    const r = route(ctx, req);
    const upstream = await connectRoute(ctx, req, r, rec);
    if (client.destroyed) {
      upstream.destroy();
      throw new ProxyError("CLIENT_GONE", "the client closed before the destination was connected");
    }
    reply?.();
    // Not removeAllListeners: it deletes the key from the socket's listener table, which
    // turns that into a dictionary (about 400 bytes) for the connection's life.
    client.removeListener("error", ignore);
    run(ctx, rec, client, upstream, "sent-is-client-read");
  } catch (e) {
    const err = toProxyError(e);
    if (reply) {
      reply(err);
      // Half-open sockets wait for the client's FIN; a refused client gets closed, not waited for.
      client.destroySoon();
    } else client.resetAndDestroy();
    fail(ctx, rec, err);
  } finally {
    ctx.connecting.delete(rec);
  }
}

function ignore(): void {}

/** Connect the route: an HBONE CONNECT stream (after its 200) or a plain TCP socket. */
export async function connectRoute(ctx: ProxyContext, req: OutboundRequest, r: Route, rec: ConnectionRecord): Promise<ClientHttp2Stream | net.Socket> {
  rec.src = { addr: formatHostPort(req.srcIp, req.srcPort), workload: r.src.workloadName, namespace: r.src.namespace, identity: workloadIdentity(r.src), app: r.src.canonicalName };
  rec.dst = { addr: formatHostPort(r.ip, r.port) };
  if (r.dst) fillDst(rec, r.dst);
  rec.dstService = r.service?.hostname;
  if (r.kind === "passthrough") {
    // Under capture the destination sees the pod's own address, as it would without the mesh.
    return dialTcp(ctx, r.ip, r.port, { srcIp: req.srcIp });
  }
  rec.security = "mutual_tls";
  rec.dstHboneAddr = formatHostPort(r.ip, ctx.hbonePort);
  const authority = formatHostPort(r.ip, r.port);
  const forwarded = `for="${formatHostPort(req.srcIp, req.srcPort)}"${r.service ? `;host=${r.service.hostname}` : ""}`;
  return ctx.pool.connect(
    { srcIdentity: workloadIdentity(r.src), dstIdentities: r.expected, hboneIp: r.ip, hbonePort: ctx.hbonePort, srcIp: req.srcIp },
    authority,
    { forwarded, baggage: baggage(r.src), traceparent: traceparent() },
  );
}

