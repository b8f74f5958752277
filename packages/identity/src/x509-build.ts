/**
 * Certificate assembly: the TBSCertificate is built with node-forge's asn1 encoder, the
 * subject's SubjectPublicKeyInfo is node:crypto's own DER export (any key type node can
 * read, where forge's pki holds RSA only), the issuer Name is copied from the issuing
 * certificate as it is (chain building compares names), and node:crypto signs with the
 * issuer's key: sha256WithRSAEncryption for RSA, ECDSA with the curve's hash for EC.
 */
import type { KeyObject } from "node:crypto";
import { ZtError } from "@zt/errors";
import { bitString, contextConstructed, fromDer, integerHex, oid, seq, set, smallInteger, time, toDer, utf8 } from "./asn1.js";
import { derToPem, randomSerialHex } from "./pem.js";
import { algorithmIdentifier, signatureAlgorithmFor, signNative, SUPPORTED_SIGNING_KEYS } from "./signing.js";
import { extensionNode, type Extension } from "./x509-extensions.js";

const NAME_OIDS = { O: "2.5.4.10", CN: "2.5.4.3" } as const;

export interface NameAttribute {
  readonly type: keyof typeof NAME_OIDS;
  readonly value: string;
}

export interface CertTemplate {
  /** The subject's public key: DER SubjectPublicKeyInfo (`publicKey.export({ type: "spki", format: "der" })`). */
  readonly spki: Buffer;
  /** Empty for workload certificates (the identity lives in the SAN). */
  readonly subject: readonly NameAttribute[];
  /** The issuer's subject Name, DER as found in its certificate; omitted for a self-signed certificate. */
  readonly issuerName?: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly extensions: readonly Extension[];
}

export interface BuiltCert {
  readonly pem: string;
  readonly serialHex: string;
}

/** A Name of one attribute per RDN, as UTF8String (a trust domain may hold '_', which PrintableString lacks). */
export function nameDer(attrs: readonly NameAttribute[]): Buffer {
  return toDer(seq(attrs.map((a) => set([seq([oid(NAME_OIDS[a.type]), utf8(a.value)])]))));
}

/** Builds the certificate and signs it with `issuerKey` (RSA, or EC on P-256/384/521). */
export async function buildCertificate(t: CertTemplate, issuerKey: KeyObject): Promise<BuiltCert> {
  const alg = signatureAlgorithmFor(issuerKey);
  if (!alg) throw new ZtError("CA_KEY_UNSUPPORTED", `cannot sign a certificate with a ${issuerKey.asymmetricKeyType ?? "unknown"} key; ${SUPPORTED_SIGNING_KEYS} keys can`);
  const serialHex = randomSerialHex();
  const subject = nameDer(t.subject);
  const tbs = seq([
    contextConstructed(0, [smallInteger(2)]), // v3
    integerHex(serialHex),
    algorithmIdentifier(alg),
    fromDer(t.issuerName ?? subject),
    seq([time(t.notBefore), time(t.notAfter)]),
    fromDer(subject),
    fromDer(t.spki),
    contextConstructed(3, [seq(t.extensions.map((e) => extensionNode(e, t.spki)))]),
  ]);
  const tbsDer = toDer(tbs);
  const signature = await signNative(alg, tbsDer, issuerKey);
  const cert = seq([tbs, algorithmIdentifier(alg), bitString(signature)]);
  return { pem: derToPem(toDer(cert), "CERTIFICATE"), serialHex };
}
