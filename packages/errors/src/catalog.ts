/**
 * THE error catalog: every code an operator can meet, in one closed table. A code never
 * changes meaning once shipped. Connection codes carry what the data path does with
 * them: the metric's response flag, the HBONE status the inbound side answers, the
 * SOCKS5 reply the outbound side sends, and the level of the access-log line. Agent
 * codes (configuration, certificates, capture, start) have only a level.
 */

/** Istio-style `response_flags`; "-" means no failure. */
export type ResponseFlag =
  | "-"
  | "DENY"
  | "CONNECT"
  | "TLS_FAILURE"
  | "IDENTITY_ERROR"
  | "NO_ROUTE"
  | "UNKNOWN_SOURCE"
  | "BAD_REQUEST"
  | "LOOP"
  | "RESET"
  | "DRAIN"
  | "OVERLOAD"
  | "INTERNAL";

export type ErrorLevel = "debug" | "info" | "warn" | "error";

/** RFC 1928 reply codes. */
export const SocksReply = {
  ok: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export interface ErrorSpec {
  /** Metric flag of a connection that ends with this code; null for agent codes. */
  readonly flag: ResponseFlag | null;
  /** HTTP status the HBONE inbound side answers a stream refused with this code; null when it has no stream to answer. */
  readonly hbone: number | null;
  /** SOCKS5 reply for a SOCKS5 client refused with this code after its greeting; null when no reply is sent. */
  readonly socks: number | null;
  readonly level: ErrorLevel;
}

const S = SocksReply;
const conn = <F extends ResponseFlag>(flag: F, level: ErrorLevel, hbone: number | null, socks: number | null) => ({ flag, hbone, socks, level });
const agent = (level: ErrorLevel) => ({ flag: null, hbone: null, socks: null, level });

export const CATALOG = {
  // --- outbound routing (15001, SOCKS5) ---
  UNKNOWN_SOURCE: conn("UNKNOWN_SOURCE", "warn", null, S.notAllowed),
  LOOP: conn("LOOP", "warn", null, S.notAllowed),
  REGISTRY_ONLY: conn("NO_ROUTE", "warn", null, S.notAllowed),
  NO_HEALTHY_ENDPOINT: conn("NO_ROUTE", "warn", null, S.hostUnreachable),
  DRAINING: conn("DRAIN", "info", 503, S.generalFailure),
  // --- SOCKS5 handshake ---
  SOCKS_MALFORMED: conn("BAD_REQUEST", "warn", null, S.generalFailure),
  SOCKS_INCOMPLETE: conn("BAD_REQUEST", "info", null, null),
  SOCKS_TIMEOUT: conn("BAD_REQUEST", "info", null, null),
  SOCKS_NO_ACCEPTABLE_AUTH: conn("BAD_REQUEST", "warn", null, null),
  SOCKS_UNSUPPORTED_COMMAND: conn("BAD_REQUEST", "warn", null, S.commandNotSupported),
  SOCKS_BAD_ADDRESS_TYPE: conn("BAD_REQUEST", "warn", null, S.addressTypeNotSupported),
  SOCKS_UNKNOWN_HOST: conn("NO_ROUTE", "warn", null, S.hostUnreachable),
  // --- the outbound side's view of the destination's agent ---
  HBONE_CONNECT_TIMEOUT: conn("CONNECT", "warn", null, S.hostUnreachable),
  HBONE_DENIED: conn("DENY", "warn", null, S.notAllowed),
  HBONE_BAD_REQUEST: conn("BAD_REQUEST", "warn", null, S.generalFailure),
  HBONE_UPSTREAM_FAILED: conn("CONNECT", "warn", null, S.connectionRefused),
  HBONE_OVERLOADED: conn("OVERLOAD", "warn", null, S.generalFailure),
  HBONE_STREAM_RESET: conn("CONNECT", "warn", null, S.connectionRefused),
  HBONE_STREAM_REFUSED: conn("CONNECT", "warn", null, S.connectionRefused),
  IDENTITY_MISMATCH: conn("IDENTITY_ERROR", "warn", null, S.generalFailure),
  PEER_CERT_UNTRUSTED: conn("TLS_FAILURE", "warn", null, S.generalFailure),
  PEER_CERT_EXPIRED: conn("TLS_FAILURE", "warn", null, S.generalFailure),
  // --- an HBONE connection that ended under its streams (either side) ---
  HBONE_CONNECTION_LOST: conn("RESET", "warn", null, S.connectionRefused),
  HBONE_KEEPALIVE_TIMEOUT: conn("RESET", "warn", null, S.hostUnreachable),
  HBONE_GOAWAY: conn("RESET", "warn", null, S.connectionRefused),
  HBONE_PROTOCOL_ERROR: conn("RESET", "warn", null, S.generalFailure),
  HBONE_STALLED: conn("RESET", "warn", null, S.hostUnreachable),
  // --- HBONE inbound (15008): handshake ---
  TLS_FAILURE: conn("TLS_FAILURE", "warn", null, S.generalFailure),
  TLS_HANDSHAKE_TIMEOUT: conn("TLS_FAILURE", "info", null, S.hostUnreachable),
  NOT_TLS: conn("TLS_FAILURE", "warn", null, null),
  TLS_VERSION_REFUSED: conn("TLS_FAILURE", "warn", null, null),
  ALPN_MISMATCH: conn("TLS_FAILURE", "warn", null, S.generalFailure),
  CLIENT_CERT_MISSING: conn("TLS_FAILURE", "warn", null, null),
  CLIENT_CERT_UNTRUSTED: conn("TLS_FAILURE", "warn", null, null),
  CLIENT_IDENTITY_INVALID: conn("TLS_FAILURE", "warn", null, null),
  TRUST_DOMAIN_MISMATCH: conn("TLS_FAILURE", "warn", null, null),
  HBONE_NO_LOCAL_WORKLOAD: conn("NO_ROUTE", "warn", null, null),
  CERT_UNAVAILABLE: conn("TLS_FAILURE", "error", null, S.generalFailure),
  // --- HBONE inbound (15008): streams ---
  HBONE_METHOD_NOT_ALLOWED: conn("BAD_REQUEST", "warn", 400, null),
  HBONE_HEADERS_TOO_LARGE: conn("BAD_REQUEST", "warn", 431, null),
  HBONE_BAD_AUTHORITY: conn("BAD_REQUEST", "warn", 400, null),
  HBONE_AUTHORITY_MISMATCH: conn("BAD_REQUEST", "warn", 400, null),
  HBONE_NOT_LOCAL: conn("NO_ROUTE", "warn", 503, null),
  HBONE_LOOP: conn("LOOP", "warn", 503, null),
  CLIENT_STREAM_RESET: conn("RESET", "info", null, null),
  PEER_STREAM_LIMIT: conn("OVERLOAD", "warn", 429, null),
  PEER_CONNECTION_LIMIT: conn("OVERLOAD", "warn", null, null),
  // --- authorization (every inbound path) ---
  AUTHZ_DENIED: conn("DENY", "warn", 401, S.notAllowed),
  // --- 15006 plaintext inbound ---
  PLAINTEXT_NOT_LOCAL: conn("NO_ROUTE", "warn", null, null),
  // --- dialing the destination (passthrough, 15006, HBONE inbound) ---
  UPSTREAM_REFUSED: conn("CONNECT", "warn", 503, S.connectionRefused),
  UPSTREAM_TIMEOUT: conn("CONNECT", "warn", 503, S.hostUnreachable),
  UPSTREAM_UNREACHABLE: conn("CONNECT", "warn", 503, S.hostUnreachable),
  UPSTREAM_SOCKET_FAILED: conn("CONNECT", "error", 503, S.generalFailure),
  // --- an open connection ---
  CONNECTION_RESET: conn("RESET", "info", null, S.connectionRefused),
  CLIENT_GONE: conn("RESET", "info", null, null),
  // --- the agent protecting itself ---
  FD_EXHAUSTED: conn("OVERLOAD", "error", 503, S.generalFailure),
  LISTENER_FULL: conn("OVERLOAD", "warn", null, null),
  INTERNAL: conn("INTERNAL", "error", 503, S.generalFailure),

  // --- agent: start, configuration, discovery ---
  START_FAILED: agent("error"),
  BIND_FAILED: agent("error"),
  CONFIG_INVALID: agent("error"),
  CONFIG_FILE_UNREADABLE: agent("error"),
  CONFIG_FILE_TOO_LARGE: agent("error"),
  CONFIG_PARSE_FAILED: agent("error"),
  CONFIG_APPLY_FAILED: agent("error"),
  UNCAUGHT_EXCEPTION: agent("error"),
  // The admin port: a question it cannot answer as asked (/debug/explain, ztunnel explain; /debug/connections).
  EXPLAIN_QUERY_INVALID: agent("info"),
  CONNECTIONS_QUERY_INVALID: agent("info"),
  // --- agent: identity and certificates ---
  SPIFFE_ID_INVALID: agent("warn"),
  CSR_INVALID: agent("warn"),
  CA_CERT_EXPIRED: agent("error"),
  CA_CERT_INVALID: agent("error"),
  CA_CERT_NOT_CA: agent("error"),
  CA_CHAIN_INVALID: agent("error"),
  CA_FILES_INCOMPLETE: agent("error"),
  CA_FILES_UNREADABLE: agent("error"),
  CA_FILES_UNWRITABLE: agent("error"),
  CA_IDENTITY_REJECTED: agent("warn"),
  CA_KEY_INVALID: agent("error"),
  CA_KEY_MISMATCH: agent("error"),
  CA_KEY_UNSUPPORTED: agent("error"),
  CA_ROOT_INVALID: agent("error"),
  CA_TTL_INVALID: agent("error"),
  CERT_ISSUE_FAILED: agent("error"),
  CERT_MANAGER_CLOSED: agent("warn"),
  CERT_RESPONSE_INVALID: agent("error"),
  // --- agent: node rules (REDIRECT_MODE=tproxy) ---
  CAPTURE_UNAVAILABLE: agent("error"),
  CAPTURE_SOCKOPT_FAILED: agent("error"),
  CAPTURE_TOOL_MISSING: agent("error"),
  CAPTURE_LOCKED: agent("error"),
  CAPTURE_COMMAND_FAILED: agent("error"),
  CAPTURE_REMOVE_FAILED: agent("error"),
  HANDOVER_UNAVAILABLE: agent("error"),
  // Worker threads (ZTUNNEL_WORKER_THREADS): one that could not start, one that died.
  WORKER_START_FAILED: agent("error"),
  WORKER_DIED: agent("error"),
  // Kubernetes discovery: why a list or watch of a resource failed.
  KUBE_UNREACHABLE: agent("warn"),
  KUBE_UNAUTHORIZED: agent("error"),
  KUBE_FORBIDDEN: agent("error"),
  KUBE_REQUEST_FAILED: agent("warn"),
  // A remote CA (CA_ADDRESS): unreachable or failing, refusing the caller, or the mounted token missing.
  CA_UNREACHABLE: agent("warn"),
  CA_REQUEST_REFUSED: agent("error"),
  CA_TOKEN_UNREADABLE: agent("error"),
  // Delta xDS (XDS_ADDRESS): the stream's state, a resource refused (NACKed), a server breaking the protocol.
  XDS_UNREACHABLE: agent("warn"),
  XDS_REFUSED: agent("error"),
  XDS_RESOURCE_INVALID: agent("warn"),
  XDS_PROTOCOL_ERROR: agent("warn"),
  // zt-controller: a CA caller refused (bad or foreign token, impersonation not allowed), a TokenReview that failed.
  CA_CALLER_UNAUTHENTICATED: agent("warn"),
  CA_CALLER_FORBIDDEN: agent("warn"),
  TOKEN_REVIEW_FAILED: agent("error"),
  // zt-controller's xDS server: a stream refused by its authentication or by who the caller is, a stream over a limit (streams per pod, names, an unanswered first response), a response refused (NACKed) by a client, a resource it cannot encode.
  XDS_CLIENT_UNAUTHENTICATED: agent("warn"),
  XDS_CLIENT_FORBIDDEN: agent("warn"),
  XDS_CLIENT_OVER_LIMIT: agent("warn"),
  XDS_CLIENT_NACK: agent("warn"),
  XDS_RESOURCE_UNSERVABLE: agent("error"),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof CATALOG;

/** Codes a connection can end with (they carry a response flag). */
export type ConnectionCode = { [K in ErrorCode]: (typeof CATALOG)[K]["flag"] extends null ? never : K }[ErrorCode];

export function isErrorCode(s: string): s is ErrorCode {
  return Object.hasOwn(CATALOG, s);
}

export function isConnectionCode(code: ErrorCode): code is ConnectionCode {
  return CATALOG[code].flag !== null;
}
