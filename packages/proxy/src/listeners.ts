import net from "node:net";
import { authorize, formatHostPort, normalizeIp } from "@zt/state";
import type { ProxyContext } from "./context.js";
import { dialTcp } from "./dial.js";
import { ProxyError, toProxyError } from "./errors.js";
import { fail, fillDst, newRecord, run } from "./connection.js";
import { connectRoute, route, type OutboundRequest } from "./outbound.js";
import { readSocksRequest, replyBytes, replyFor, SocksReply } from "./socks5.js";
import type { ConnectionRecord } from "./types.js";

/** 15001: transparent outbound capture. The original destination is the accepted socket's local address. */
export function createOutboundServer(ctx: ProxyContext): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (client) => {
    const req = requestOf(client, normalizeIp(client.localAddress ?? "") ?? "", client.localPort ?? 0);
    void proxyOutbound(ctx, client, req, newRecord(formatHostPort(req.srcIp, req.srcPort), formatHostPort(req.dstIp, req.dstPort), "outbound", "outbound"));
  });
}

/** 15080: SOCKS5 CONNECT feeding the same outbound path; the source is the client's IP. */
export function createSocks5Server(ctx: ProxyContext): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (client) => {
    const srcIp = normalizeIp(client.remoteAddress ?? "") ?? "";
    const rec = newRecord(formatHostPort(srcIp, client.remotePort ?? 0), "-", "outbound", "socks5");
    readSocksRequest(client).then(
      (target) => {
        let dstIp: string;
        if (target.kind === "ip") dstIp = target.ip;
        else {
          const svc = ctx.store.serviceByHostname(target.host);
          const vip = svc?.vips[0]?.address;
          if (!vip) {
            const err = new ProxyError("SOCKS_UNKNOWN_HOST", `SOCKS5 target host ${target.host} is not a service hostname known to the mesh`);
            client.write(replyBytes(replyFor(err)));
            client.destroySoon();
            fail(ctx, rec, err);
            return;
          }
          dstIp = vip;
        }
        const req = { ...requestOf(client, dstIp, target.port) };
        rec.dst = { addr: formatHostPort(dstIp, target.port) };
        void proxyOutbound(ctx, client, req, rec, (err) => {
          if (!client.destroyed) client.write(replyBytes(err ? replyFor(err) : SocksReply.ok));
        });
      },
      (err: unknown) => fail(ctx, rec, toProxyError(err)),
    );
  });
}

/** 15006: plaintext inbound capture from clients outside the mesh; no identity, policy still applies. */
export function createPlaintextInboundServer(ctx: ProxyContext): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (client) => {
    void proxyPlaintextInbound(ctx, client);
  });
}

function requestOf(client: net.Socket, dstIp: string, dstPort: number): OutboundRequest {
  return { srcIp: normalizeIp(client.remoteAddress ?? "") ?? "", srcPort: client.remotePort ?? 0, dstIp, dstPort };
}

async function proxyOutbound(ctx: ProxyContext, client: net.Socket, req: OutboundRequest, rec: ConnectionRecord, reply?: (err?: ProxyError) => void): Promise<void> {
  client.on("error", () => {});
  try {
    const r = route(ctx, req);
    const upstream = await connectRoute(ctx, req, r, rec);
    if (client.destroyed) {
      upstream.destroy();
      throw new ProxyError("CLIENT_GONE", "the client closed before the destination was connected");
    }
    reply?.();
    client.removeAllListeners("error");
    run(ctx, rec, client, upstream, "sent-is-client-read");
  } catch (e) {
    const err = toProxyError(e);
    if (reply) {
      reply(err);
      // Half-open sockets wait for the client's FIN; a refused client gets closed, not waited for.
      client.destroySoon();
    } else client.resetAndDestroy();
    fail(ctx, rec, err);
  }
}

async function proxyPlaintextInbound(ctx: ProxyContext, client: net.Socket): Promise<void> {
  client.on("error", () => {});
  const dstIp = normalizeIp(client.localAddress ?? "") ?? "";
  const dstPort = client.localPort ?? 0;
  const srcIp = normalizeIp(client.remoteAddress ?? "") ?? "";
  const rec = newRecord(formatHostPort(srcIp, client.remotePort ?? 0), formatHostPort(dstIp, dstPort), "inbound", "plaintext");
  try {
    const dst = ctx.store.workloadByIp(dstIp);
    if (!dst || dst.node !== ctx.nodeName) {
      throw new ProxyError("PLAINTEXT_NOT_LOCAL", `plaintext connection to ${dstIp}, which is not a workload of node ${ctx.nodeName}`);
    }
    fillDst(rec, dst);
    if (ctx.ownPorts.has(dstPort)) {
      throw new ProxyError("LOOP", `plaintext connection to port ${dstPort}, one of the agent's own ports`);
    }
    const decision = authorize(ctx.store.policiesFor(dst), { srcIdentity: undefined, srcIp, dstIp, dstPort });
    if (!decision.allow) {
      throw new ProxyError("AUTHZ_DENIED", `plaintext connection from ${srcIp} to ${dst.namespace}/${dst.name}:${dstPort} denied by ${decision.policy ?? "policy"} (${decision.reason})`);
    }
    const upstream = await dialTcp(ctx.dialer, dstIp, dstPort, ctx.connectTimeoutMs, srcIp);
    client.removeAllListeners("error");
    run(ctx, rec, upstream, client, "sent-is-upstream-written");
  } catch (e) {
    client.resetAndDestroy();
    fail(ctx, rec, toProxyError(e));
  }
}

/** A TCP listener with the options every proxy listener uses. */
export function createProxyListener(onConnection: (socket: net.Socket) => void): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, onConnection);
}
