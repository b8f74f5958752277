import { ZtError } from "@zt/state";
import type { ResponseFlag } from "./types.js";

/** A refused or failed connection: a stable code, an operator message, and the metric flag. */
export class ProxyError extends ZtError {
  readonly flag: ResponseFlag;
  constructor(code: string, flag: ResponseFlag, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.flag = flag;
    this.name = "ProxyError";
  }
}

/** Translate anything thrown on the data path into a ProxyError, at the edge, in one place. */
export function toProxyError(err: unknown, fallbackFlag: ResponseFlag = "CONNECT"): ProxyError {
  if (err instanceof ProxyError) return err;
  const e = err as NodeJS.ErrnoException & { code?: string };
  const code = typeof e?.code === "string" ? e.code : "";
  if (code === "IDENTITY_MISMATCH" || code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return new ProxyError("IDENTITY_MISMATCH", "IDENTITY_ERROR", `peer presented an unexpected identity: ${e.message}`, { cause: err });
  }
  if (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS") || /certificate|ssl|tls/i.test(code)) {
    return new ProxyError("TLS_FAILURE", "TLS_FAILURE", `TLS handshake failed: ${e.message}`, { cause: err });
  }
  if (code === "ECONNREFUSED") {
    return new ProxyError("UPSTREAM_REFUSED", fallbackFlag, `connection refused by ${addrOf(e)} (is anything listening on that port?)`, { cause: err });
  }
  if (code === "ETIMEDOUT" || code === "CONNECT_TIMEOUT") {
    return new ProxyError("UPSTREAM_TIMEOUT", fallbackFlag, `connect to ${addrOf(e)} timed out (maybe a NetworkPolicy is blocking it)`, { cause: err });
  }
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") {
    return new ProxyError("UPSTREAM_UNREACHABLE", fallbackFlag, `no route to ${addrOf(e)}`, { cause: err });
  }
  if (code === "ECONNRESET" || code === "EPIPE") {
    return new ProxyError("CONNECTION_RESET", "RESET", `connection reset: ${e.message}`, { cause: err });
  }
  const msg = e instanceof Error ? e.message : String(err);
  return new ProxyError(code || "INTERNAL", fallbackFlag, msg, { cause: err });
}

function addrOf(e: NodeJS.ErrnoException & { address?: string; port?: number }): string {
  return e.address ? `${e.address}:${e.port ?? "?"}` : "the destination";
}
