/**
 * Workload keys and their PKCS#10 requests, as Istio's ztunnel makes them: ECDSA P-256,
 * an empty subject, the identity as the one (critical) URI SAN, signed with SHA-256.
 * Key generation and signing are node:crypto's, in libuv's threadpool.
 */
import { generateKeyPair, type KeyObject } from "node:crypto";
import { bitString, contextConstructed, fromDer, oid, seq, set, smallInteger, toDer } from "./asn1.js";
import { derToPem } from "./pem.js";
import { algorithmIdentifier, signatureAlgorithmFor, signNative } from "./signing.js";
import { extensionNode } from "./x509-extensions.js";

const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

export interface KeyAndCsr {
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"), ready for node:tls. */
  readonly keyPem: string;
  /** PKCS#10 PEM with an extensionRequest carrying the identity as URI SAN. */
  readonly csrPem: string;
}

function ecP256(): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  return new Promise((resolve, reject) => {
    generateKeyPair("ec", { namedCurve: "P-256" }, (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey })));
  });
}

/** A fresh ECDSA P-256 key and a SHA-256 CSR for `identity`. */
export async function createKeyAndCsr(identity: string): Promise<KeyAndCsr> {
  const { publicKey, privateKey: key } = await ecP256();
  const spki = publicKey.export({ type: "spki", format: "der" });
  const alg = signatureAlgorithmFor(key)!;
  const info = seq([
    smallInteger(0), // version 1
    seq([]), // an empty subject
    fromDer(spki),
    contextConstructed(0, [
      seq([oid(EXTENSION_REQUEST), set([seq([extensionNode({ kind: "subjectAltName", uri: identity }, spki)])])]),
    ]),
  ]);
  const infoDer = toDer(info);
  const signature = await signNative(alg, infoDer, key);
  return {
    keyPem: key.export({ type: "pkcs8", format: "pem" }).toString(),
    csrPem: derToPem(toDer(seq([info, algorithmIdentifier(alg), bitString(signature)])), "CERTIFICATE REQUEST"),
  };
}
