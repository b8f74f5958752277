import { X509Certificate, randomBytes } from "node:crypto";

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Splits a PEM bundle into its certificate blocks (each normalized to end in "\n"). */
export function splitPemCerts(bundle: string): string[] {
  return (bundle.match(CERT_BLOCK) ?? []).map((b) => `${b.replace(/\r\n/g, "\n")}\n`);
}

/** Parses every certificate of a PEM bundle; throws (plain Error) on a corrupt block. */
export function parseCerts(bundle: string): X509Certificate[] {
  return splitPemCerts(bundle).map((pem) => new X509Certificate(pem));
}

/** True when the certificate names itself as issuer and its own key signed it. */
export function isSelfSigned(cert: X509Certificate): boolean {
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** X.509 time as RFC 3339 with second precision ("2025-01-01T00:00:00Z"). */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Decimal rendering of a hex serial number (as Istio's ztunnel prints it). */
export function serialDecimal(hex: string): string {
  return BigInt(`0x${hex}`).toString(10);
}

/**
 * A random 16-byte positive serial number in minimal DER form: the top bit of
 * the first byte is cleared (positive) and the first byte is never zero.
 */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString("hex");
}

/** PEM with 64-column base64 lines and a final newline, as OpenSSL writes it. */
export function derToPem(der: Buffer, label: string): string {
  const b64 = der.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** The DER of the first PEM block labelled `label`; undefined when there is none. */
export function pemToDer(pem: string, label: string): Buffer | undefined {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  return m ? Buffer.from(m[1]!.replace(/\s+/g, ""), "base64") : undefined;
}
