/**
 * The data path's errors, and the one edge where Node's and OpenSSL's errors become
 * catalog codes: errno values, TLS alerts (`ERR_SSL_*`), certificate verify results and
 * HTTP/2 errors. Nothing else on the data path looks at a foreign `err.code`, except
 * connection.ts telling a received RST_STREAM (ERR_HTTP2_STREAM_ERROR) from other ends.
 */
import { CATALOG, isConnectionCode, ZtError, type ConnectionCode, type ResponseFlag } from "@zt/errors";

/** A refused or failed connection: a code from the catalog and an operator message. */
export class ProxyError extends ZtError<ConnectionCode> {
  constructor(code: ConnectionCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ProxyError";
  }

  /** The metric flag, from the catalog. */
  get flag(): ResponseFlag {
    return CATALOG[this.code].flag;
  }
}

/** OpenSSL's certificate verify results (Node puts them in `err.code`). */
const EXPIRED = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "ERROR_IN_CERT_NOT_BEFORE_FIELD", "ERROR_IN_CERT_NOT_AFTER_FIELD"]);
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
]);
const RESET = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ERR_STREAM_PREMATURE_CLOSE"]);
const UNREACHABLE = new Set(["EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN"]);
const EXHAUSTED = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);
const SOCKET = new Set(["EADDRNOTAVAIL", "EADDRINUSE", "EACCES", "EPERM", "EINVAL", "EAFNOSUPPORT"]);

type Foreign = Error & { code?: unknown; address?: string; port?: number; reason?: string };

/**
 * Translate anything thrown or emitted on the data path into a ProxyError. A ProxyError
 * (or a ZtError with a connection code) passes through; an errno or TLS code gets its
 * catalog code; anything else is `fallback` (default INTERNAL), with the foreign code in
 * the message, never as a code.
 */
export function toProxyError(err: unknown, fallback: ConnectionCode = "INTERNAL"): ProxyError {
  if (err instanceof ProxyError) return err;
  if (err instanceof ZtError) {
    const z = err as ZtError;
    return new ProxyError(isConnectionCode(z.code) ? z.code : fallback, z.message, { cause: err });
  }
  const e = (err instanceof Error ? err : new Error(String(err))) as Foreign;
  const code = typeof e.code === "string" ? e.code : "";
  const make = (c: ConnectionCode, message: string): ProxyError => new ProxyError(c, message, { cause: err });
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return make("IDENTITY_MISMATCH", `peer presented an unexpected identity: ${e.message}`);
  if (EXPIRED.has(code)) return make("PEER_CERT_EXPIRED", `the peer's certificate is outside its validity period (${code}); check the clocks and the peer's certificate rotation`);
  if (UNTRUSTED.has(code)) return make("PEER_CERT_UNTRUSTED", `the peer's certificate does not chain to the mesh roots (${code}); is the peer using another CA?`);
  if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") return make("TLS_HANDSHAKE_TIMEOUT", "the TLS handshake did not finish in time");
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_")) return make("TLS_FAILURE", `TLS failed: ${e.reason ?? e.message}`);
  if (code === "ECONNREFUSED") return make("UPSTREAM_REFUSED", `connection refused by ${addrOf(e)} (is anything listening on that port?)`);
  if (code === "ETIMEDOUT") return make("UPSTREAM_TIMEOUT", `connect to ${addrOf(e)} timed out (maybe a NetworkPolicy is blocking it)`);
  if (UNREACHABLE.has(code)) return make("UPSTREAM_UNREACHABLE", `no route to ${addrOf(e)} (${code})`);
  if (RESET.has(code)) return make("CONNECTION_RESET", `connection reset (${code})`);
  if (EXHAUSTED.has(code)) return make("FD_EXHAUSTED", `the agent is out of ${code === "ENOMEM" || code === "ENOBUFS" ? "memory" : "file descriptors"} (${code}); raise its limits or find what holds them`);
  if (SOCKET.has(code)) return make("UPSTREAM_SOCKET_FAILED", `cannot open a socket to ${addrOf(e)} (${code}): ${e.message}`);
  if (code.startsWith("ERR_HTTP2_")) return http2Error(code, e);
  return make(fallback, code ? `${e.message} (${code})` : e.message);
}

/** Node's HTTP/2 errors: a stream or session that the peer or nghttp2 ended. */
function http2Error(code: string, e: Foreign): ProxyError {
  const make = (c: ConnectionCode, message: string): ProxyError => new ProxyError(c, message, { cause: e });
  switch (code) {
    case "ERR_HTTP2_GOAWAY_SESSION":
      return make("HBONE_GOAWAY", "the HBONE peer sent GOAWAY before this stream was served");
    case "ERR_HTTP2_STREAM_CANCEL":
    case "ERR_HTTP2_INVALID_SESSION":
    case "ERR_HTTP2_SOCKET_UNBOUND":
      return make("HBONE_CONNECTION_LOST", `the HBONE connection ended under the stream (${code})`);
    case "ERR_HTTP2_OUT_OF_STREAMS":
      return make("HBONE_STREAM_REFUSED", "the HBONE connection has no stream ids left");
    case "ERR_HTTP2_STREAM_ERROR":
      return make(/REFUSED_STREAM/.test(e.message) ? "HBONE_STREAM_REFUSED" : "HBONE_STREAM_RESET", `the HBONE peer reset the stream: ${e.message}`);
    default:
      return make("HBONE_PROTOCOL_ERROR", `HTTP/2 error on the HBONE connection: ${e.message} (${code})`);
  }
}

/** OpenSSL's reasons for refusing an HBONE client (server side), in an operator's words. */
const HANDSHAKE_REASONS: Readonly<Record<string, readonly [ConnectionCode, string]>> = {
  "http request": ["NOT_TLS", "sent plain HTTP to the HBONE port, which speaks only mTLS"],
  "wrong version number": ["NOT_TLS", "did not start a TLS handshake"],
  // Bytes that are no TLS record at all (its length past any record's): what plain data meets, one time in a few hundred.
  "packet length too long": ["NOT_TLS", "did not start a TLS handshake"],
  "unsupported protocol": ["TLS_VERSION_REFUSED", "offered only TLS versions below 1.3; HBONE requires TLS 1.3"],
  "no application protocol": ["ALPN_MISMATCH", "did not offer ALPN h2"],
  "peer did not return a certificate": ["CLIENT_CERT_MISSING", "presented no client certificate; HBONE requires mutual TLS"],
};

/** Why an HBONE client's handshake failed on our side. */
export function clientHandshakeError(err: Error & { reason?: string }, remote: string): ProxyError {
  if (err instanceof ProxyError) return err;
  const known = err.reason ? HANDSHAKE_REASONS[err.reason] : undefined;
  const [code, text] = known ?? (["TLS_FAILURE", `failed the TLS handshake: ${err.reason ?? err.message.trim()}`] as const);
  return new ProxyError(code, `HBONE client ${remote} ${text}`, { cause: err });
}

function addrOf(e: Foreign): string {
  return e.address ? `${e.address}:${e.port ?? "?"}` : "the destination";
}
