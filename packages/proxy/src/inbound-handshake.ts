import type net from "node:net";
import tls from "node:tls";
import { isConnectionCode } from "@zt/errors";
import { checkClientIdentity, serverSocketOptions } from "@zt/identity";
import { formatHostPort, normalizeIp, workloadIdentity } from "@zt/state";
import { fail, fillDst, newRecord } from "./connection.js";
import type { ProxyContext } from "./context.js";
import { clientHandshakeError, ProxyError } from "./errors.js";

const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The TLS side of an accepted HBONE connection: the certificate of the workload whose
 * address the connection arrived on, TLS 1.3 with ALPN h2, a client certificate that
 * chains to the mesh roots with our trust domain. Resolves with the secure socket and the
 * identity whose certificate it presented, or with undefined after the refusal was recorded
 * (one log line, one metric).
 */
export async function acceptTls(ctx: ProxyContext, raw: net.Socket): Promise<{ sock: tls.TLSSocket; presented: string } | undefined> {
  const localIp = normalizeIp(raw.localAddress ?? "") ?? "";
  const remote = formatHostPort(normalizeIp(raw.remoteAddress ?? "") ?? "?", raw.remotePort ?? 0);
  const dst = ctx.store.workloadByIp(localIp);
  const rec = newRecord(remote, formatHostPort(localIp, raw.localPort ?? 0));
  const refuse = (err: ProxyError, sock: net.Socket = raw): undefined => {
    sock.destroy();
    fail(ctx, rec, err);
    return undefined;
  };
  if (!dst || dst.node !== ctx.nodeName) {
    return refuse(new ProxyError("HBONE_NO_LOCAL_WORKLOAD", `HBONE connection to ${localIp}, which is not a workload of node ${ctx.nodeName}; nothing to present a certificate for`));
  }
  fillDst(rec, dst);
  const id = workloadIdentity(dst);
  let cert = ctx.certs.get(id);
  try {
    cert ??= await ctx.certs.fetch(id);
  } catch (err) {
    return refuse(new ProxyError("CERT_UNAVAILABLE", `no certificate for ${id} to answer HBONE client ${remote}: ${(err as Error).message}`, { cause: err }));
  }
  if (raw.destroyed) return refuse(new ProxyError("CLIENT_GONE", `HBONE client ${remote} left before the TLS handshake`));
  // HTTP/2 carries half-close in frames; a FIN on the TCP connection ends the session.
  // (The TLS socket inherits this flag, and with it set the session would never see EOF.)
  raw.allowHalfOpen = false;
  const sock = new tls.TLSSocket(raw, serverSocketOptions(cert));
  return new Promise((resolve) => {
    raw.setTimeout(HANDSHAKE_TIMEOUT_MS, () => sock.destroy(new ProxyError("TLS_HANDSHAKE_TIMEOUT", `HBONE client ${remote} did not finish the TLS handshake within ${HANDSHAKE_TIMEOUT_MS} ms`)));
    raw.resume();
    sock.once("error", (err) => resolve(refuse(clientHandshakeError(err, remote), sock)));
    sock.once("secure", () => {
      raw.setTimeout(0);
      if (sock.alpnProtocol !== "h2") {
        return resolve(refuse(new ProxyError("ALPN_MISMATCH", `HBONE client ${remote} did not negotiate ALPN h2 (got ${String(sock.alpnProtocol)})`), sock));
      }
      const bad = checkClientIdentity(sock, ctx.trustDomain);
      if (bad) return resolve(refuse(new ProxyError(isConnectionCode(bad.code) ? bad.code : "TLS_FAILURE", `HBONE client ${remote} rejected: ${bad.message}`), sock));
      sock.removeAllListeners("error");
      sock.on("error", () => {});
      resolve({ sock, presented: id });
    });
  });
}
