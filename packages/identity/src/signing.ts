/**
 * Signatures for certificates and CSRs, made and checked by node:crypto (OpenSSL).
 * The callback forms run in libuv's threadpool for every key type, so an RSA CA
 * signature (about a millisecond of CPU) never holds up the event loop; an ECDSA
 * P-256 one costs tens of microseconds either way, and takes the same path for
 * one code path's sake.
 */
import { sign, verify, type KeyObject } from "node:crypto";
import { nullValue, oid, seq, type Node } from "./asn1.js";

export interface SignatureAlgorithm {
  readonly name: string;
  readonly oid: string;
  readonly hash: "sha256" | "sha384" | "sha512";
  /** RSA's AlgorithmIdentifier carries NULL parameters; ECDSA's has none (RFC 5758). */
  readonly nullParams: boolean;
}

const ALGORITHMS: readonly SignatureAlgorithm[] = [
  { name: "sha256WithRSAEncryption", oid: "1.2.840.113549.1.1.11", hash: "sha256", nullParams: true },
  { name: "sha384WithRSAEncryption", oid: "1.2.840.113549.1.1.12", hash: "sha384", nullParams: true },
  { name: "sha512WithRSAEncryption", oid: "1.2.840.113549.1.1.13", hash: "sha512", nullParams: true },
  { name: "ecdsa-with-SHA256", oid: "1.2.840.10045.4.3.2", hash: "sha256", nullParams: false },
  { name: "ecdsa-with-SHA384", oid: "1.2.840.10045.4.3.3", hash: "sha384", nullParams: false },
  { name: "ecdsa-with-SHA512", oid: "1.2.840.10045.4.3.4", hash: "sha512", nullParams: false },
];

const byName = (name: string): SignatureAlgorithm => ALGORITHMS.find((a) => a.name === name)!;

/** The EC curves a signer may use, with the hash Go's crypto/x509 (Istio's CA) pairs with each. */
const EC_CURVES: Readonly<Record<string, string>> = {
  prime256v1: "ecdsa-with-SHA256",
  secp384r1: "ecdsa-with-SHA384",
  secp521r1: "ecdsa-with-SHA512",
};

export const SUPPORTED_SIGNING_KEYS = "RSA, or EC on P-256, P-384 or P-521";

/**
 * How `key` signs: SHA-256 with RSA for any RSA key, ECDSA with the hash that matches the
 * curve (SHA-256 for P-256). Undefined for anything else (RSA-PSS, Ed25519, other curves).
 */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm | undefined {
  if (key.asymmetricKeyType === "rsa") return byName("sha256WithRSAEncryption");
  if (key.asymmetricKeyType === "ec") {
    const name = EC_CURVES[key.asymmetricKeyDetails?.namedCurve ?? ""];
    return name === undefined ? undefined : byName(name);
  }
  return undefined;
}

export function signatureAlgorithmByOid(oid: string): SignatureAlgorithm | undefined {
  return ALGORITHMS.find((a) => a.oid === oid);
}

/** The AlgorithmIdentifier that names `alg` in a certificate or CSR. */
export function algorithmIdentifier(alg: SignatureAlgorithm): Node {
  return seq([oid(alg.oid), ...(alg.nullParams ? [nullValue()] : [])]);
}

/** Signs `data` (ECDSA signatures come DER-encoded, as X.509 and PKCS#10 carry them). */
export function signNative(alg: SignatureAlgorithm, data: Buffer, key: KeyObject): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    sign(alg.hash, data, key, (err, signature) => (err ? reject(err) : resolve(signature)));
  });
}

export function verifyNative(alg: SignatureAlgorithm, data: Buffer, key: KeyObject, signature: Buffer): Promise<boolean> {
  return new Promise((resolve, reject) => {
    verify(alg.hash, data, key, signature, (err, ok) => (err ? reject(err) : resolve(ok)));
  });
}
