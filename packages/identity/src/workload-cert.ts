import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import { ZtError } from "@zt/errors";
import { rfc3339, serialDecimal } from "./pem.js";
import type { SignedCertificate } from "./types.js";

/** A workload's key and certificate, ready to use with node:tls. Immutable. */
export interface WorkloadCertificate {
  readonly identity: string;
  /** PKCS#8 PEM. */
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly certChain: string[];
  readonly roots: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Lower-case hex, no separators. */
  readonly serialNumber: string;
  /** TLS 1.3 only; key, cert = chain, ca = roots. Built once per certificate. */
  readonly secureContext: tls.SecureContext;
}

/** One certificate as /config_dump shows it (Istio ztunnel's shape). */
export interface CertDumpEntry {
  /** Never filled: PEMs are not dumped. */
  readonly pem?: undefined;
  /** Decimal, as ztunnel prints it. */
  readonly serialNumber: string;
  /** RFC 3339, second precision. */
  readonly validFrom: string;
  readonly expirationTime: string;
}

export interface CertDump {
  readonly identity: string;
  readonly state: "Available" | "Initializing" | "Unavailable";
  readonly certChain: CertDumpEntry[];
  readonly rootCerts: CertDumpEntry[];
  /**
   * The same as `state`, in plain words: "pending" (no certificate yet, one being
   * asked for), "available" (a valid certificate, maybe with a failed rotation in
   * `lastError`), "failed" (no valid certificate, and the last attempt failed; retried with backoff).
   */
  readonly status: "pending" | "available" | "failed";
  /** RFC 3339: when this certificate is to be replaced (a certificate of a workload on this node). */
  readonly rotatesAt?: string;
  /** Last issuance/rotation failure, while it is not yet resolved (the message of `lastError`). */
  readonly error?: string;
  /** The same failure with its stable code and when it happened (RFC 3339). */
  readonly lastError?: { readonly code: string; readonly message: string; readonly at: string };
}

/**
 * Checks what a CertificateSource returned against the key we generated and
 * builds the WorkloadCertificate (and its SecureContext).
 */
export function toWorkloadCertificate(identity: string, keyPem: string, signed: SignedCertificate): WorkloadCertificate {
  const leafPem = signed.certChain[0];
  if (leafPem === undefined) throw new ZtError("CERT_RESPONSE_INVALID", `the CA returned no certificate for ${identity}`);
  if (signed.roots.length === 0) throw new ZtError("CERT_RESPONSE_INVALID", `the CA returned no root certificates for ${identity}`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
  } catch (err) {
    throw new ZtError("CERT_RESPONSE_INVALID", `the CA returned a corrupt certificate for ${identity}: ${(err as Error).message}`, { cause: err });
  }
  const sans = (leaf.subjectAltName ?? "").split(", ");
  if (!sans.includes(`URI:${identity}`)) {
    throw new ZtError("CERT_RESPONSE_INVALID", `the CA returned a certificate for ${leaf.subjectAltName ?? "no SAN"}, wanted URI:${identity}`);
  }
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= Date.now()) {
    throw new ZtError("CERT_RESPONSE_INVALID", `the CA returned a certificate for ${identity} that expired at ${notAfter.toISOString()}`);
  }
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext({
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      key: keyPem,
      cert: signed.certChain.join("\n"),
      ca: signed.roots,
    });
  } catch (err) {
    throw new ZtError("CERT_RESPONSE_INVALID", `the certificate for ${identity} is unusable with its key: ${(err as Error).message}`, { cause: err });
  }
  return {
    identity,
    keyPem,
    certChain: [...signed.certChain],
    roots: [...signed.roots],
    notBefore: new Date(leaf.validFrom),
    notAfter,
    serialNumber: leaf.serialNumber.toLowerCase(),
    secureContext,
  };
}

/** The dump entries of a list of PEM certificates (corrupt ones are skipped). */
export function dumpCerts(pems: readonly string[]): CertDumpEntry[] {
  const out: CertDumpEntry[] = [];
  for (const pem of pems) {
    try {
      const c = new X509Certificate(pem);
      out.push({
        serialNumber: serialDecimal(c.serialNumber),
        validFrom: rfc3339(new Date(c.validFrom)),
        expirationTime: rfc3339(new Date(c.validTo)),
      });
    } catch {
      // A certificate we could not parse was already refused when it arrived.
    }
  }
  return out;
}
