/** node:tls options and peer checks for HBONE mTLS (TLS 1.3, ALPN h2, SPIFFE URI SANs). */
import type tls from "node:tls";
import { ZtError } from "@zt/errors";
import { parseSpiffe, type SpiffeParts } from "./spiffe.js";
import type { WorkloadCertificate } from "./workload-cert.js";

export const HBONE_ALPN = "h2";

export interface PeerIdentity extends SpiffeParts {
  /** The full SPIFFE id. */
  readonly id: string;
}

/**
 * Options for the accepting side: `new tls.TLSSocket(raw, serverSocketOptions(cert))`
 * (also usable with tls.createServer). A client certificate is required and must
 * chain to the mesh roots; check the identity afterwards with checkClientIdentity.
 */
export function serverSocketOptions(cert: WorkloadCertificate): tls.TLSSocketOptions {
  return {
    isServer: true,
    secureContext: cert.secureContext,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: [HBONE_ALPN],
  };
}

/**
 * Options for the dialing side (merge with host/port or socket). No SNI is sent.
 * The handshake fails unless one of the server's URI SANs equals one of
 * `expectedIdentities` (exact string match; the destination workload's identity
 * plus the service's subjectAltNames); the socket then emits 'error' with a
 * ZtError whose code is IDENTITY_MISMATCH, before any application data is sent.
 */
export function clientConnectOptions(
  cert: WorkloadCertificate,
  expectedIdentities: readonly string[],
): tls.ConnectionOptions {
  const expected = [...expectedIdentities];
  return {
    secureContext: cert.secureContext,
    ALPNProtocols: [HBONE_ALPN],
    rejectUnauthorized: true,
    checkServerIdentity: (_host: string, peer: tls.PeerCertificate) => {
      const presented = uriSans(peer.subjectaltname);
      if (presented.some((uri) => expected.includes(uri))) return undefined;
      return new ZtError(
        "IDENTITY_MISMATCH",
        `server identity mismatch: expected one of [${expected.join(", ")}], ` +
          `server presented [${presented.join(", ") || "no URI SAN"}]`,
      );
    },
  };
}

/**
 * The first SPIFFE workload id among the peer certificate's URI SANs. Read through
 * getPeerX509Certificate, which wraps the certificate as it is; getPeerCertificate builds an
 * object of every field (and the issuer chain's), several times dearer per connection.
 */
export function peerIdentity(socket: tls.TLSSocket): PeerIdentity | undefined {
  const peer = socket.getPeerX509Certificate();
  if (!peer) return undefined;
  for (const uri of uriSans(peer.subjectAltName)) {
    const parts = parseSpiffe(uri);
    if (parts) return { id: uri, ...parts };
  }
  return undefined;
}

/**
 * Server-side check after the handshake ('secure' event): the client presented
 * a certificate that chains to our roots, with a SPIFFE id in `trustDomain`.
 * Returns undefined when all is well; otherwise destroy the socket.
 *
 * MANDATORY for a standalone `new tls.TLSSocket(raw, { isServer: true })`:
 * node only enforces rejectUnauthorized for sockets created by a tls.Server,
 * so a standalone server socket completes the handshake with an untrusted
 * client certificate (only a missing certificate is refused by OpenSSL).
 */
export function checkClientIdentity(socket: tls.TLSSocket, trustDomain: string): ZtError | undefined {
  const peer = socket.getPeerX509Certificate();
  if (!peer) {
    return new ZtError("CLIENT_CERT_MISSING", "the HBONE client presented no certificate");
  }
  const chainError = chainVerifyError(socket);
  if (chainError !== undefined) {
    return new ZtError(
      "CLIENT_CERT_UNTRUSTED",
      `the HBONE client certificate does not chain to the mesh roots (${chainError})`,
    );
  }
  const id = peerIdentity(socket);
  if (!id) {
    return new ZtError(
      "CLIENT_IDENTITY_INVALID",
      `the HBONE client certificate carries no spiffe://<td>/ns/<ns>/sa/<sa> URI SAN (SANs: ${peer.subjectAltName ?? "none"})`,
    );
  }
  if (id.trustDomain !== trustDomain) {
    return new ZtError(
      "TRUST_DOMAIN_MISMATCH",
      `the HBONE client ${id.id} is from trust domain "${id.trustDomain}", this node accepts "${trustDomain}"`,
    );
  }
  return undefined;
}

const SAN_ENTRY = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;

/** URI entries of node's `subjectaltname` string (handles node's quoted values). */
export function uriSans(subjectaltname: string | undefined): string[] {
  if (!subjectaltname) return [];
  const out: string[] = [];
  for (const m of subjectaltname.matchAll(SAN_ENTRY)) {
    if (m[1] !== "URI" || m[2] === undefined) continue;
    let value = m[2];
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    out.push(value);
  }
  return out;
}

interface HandleWithVerify {
  verifyError?: () => Error | null;
}

/**
 * Why the peer chain failed verification, or undefined when it verified.
 * tls.Server sockets carry the verdict in `authorized`; standalone server
 * sockets only have OpenSSL's verify result on their handle (the same call
 * node's own tls.Server makes).
 */
function chainVerifyError(socket: tls.TLSSocket): string | undefined {
  if (socket.authorized) return undefined;
  if (socket.authorizationError) return String(socket.authorizationError);
  const handle = (socket as unknown as { _handle?: HandleWithVerify | null })._handle;
  if (typeof handle?.verifyError !== "function") return "the connection is already closed";
  const err = handle.verifyError();
  if (err === null) return undefined;
  return (err as NodeJS.ErrnoException).code ?? err.message;
}
