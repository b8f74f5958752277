/**
 * The CA's side of a PKCS#10 request: its public key, once its signature verified over
 * the CertificationRequestInfo exactly as it was signed. RSA and EC keys alike.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { ZtError } from "@zt/errors";
import { oidFromDer } from "./asn1.js";
import { children, contents, expectTag, readTlv, TAG, whole } from "./der.js";
import { pemToDer } from "./pem.js";
import { signatureAlgorithmByOid, verifyNative } from "./signing.js";

export interface VerifiedCsr {
  /** The requester's SubjectPublicKeyInfo, DER, byte for byte from the request. */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
}

function invalid(message: string, cause?: unknown): never {
  throw new ZtError("CSR_INVALID", message, cause === undefined ? undefined : { cause });
}

export async function verifyCsr(csrPem: string): Promise<VerifiedCsr> {
  const der = pemToDer(csrPem, "CERTIFICATE REQUEST") ?? pemToDer(csrPem, "NEW CERTIFICATE REQUEST");
  if (!der) invalid("the CSR is not a PEM PKCS#10 request (no BEGIN CERTIFICATE REQUEST block)");
  let parts;
  try {
    const outer = expectTag(readTlv(der), TAG.SEQUENCE, "CertificationRequest");
    if (outer.end !== der.length) throw new Error("trailing bytes after the request");
    const [info, alg, sig] = children(der, outer);
    const infoFields = children(der, expectTag(info, TAG.SEQUENCE, "certificationRequestInfo"));
    const spki = expectTag(infoFields[2], TAG.SEQUENCE, "subjectPKInfo");
    const algOid = expectTag(children(der, expectTag(alg, TAG.SEQUENCE, "signatureAlgorithm"))[0], TAG.OID, "algorithm");
    const sigBits = contents(der, expectTag(sig, TAG.BIT_STRING, "signature"));
    if (sigBits[0] !== 0) throw new Error("the signature BIT STRING has unused bits");
    parts = { info: whole(der, info!), spki: Buffer.from(whole(der, spki)), algOid: oidFromDer(contents(der, algOid)), signature: sigBits.subarray(1) };
  } catch (err) {
    invalid(`the CSR is not a well-formed PKCS#10 request: ${(err as Error).message}`, err);
  }
  const alg = signatureAlgorithmByOid(parts.algOid);
  if (!alg) invalid(`the CSR is signed with algorithm ${parts.algOid}; RSA or ECDSA with SHA-256/384/512 is needed`);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: parts.spki, format: "der", type: "spki" });
  } catch (err) {
    invalid(`the CSR's public key cannot be read: ${(err as Error).message}`, err);
  }
  let ok = false;
  try {
    ok = await verifyNative(alg, parts.info, publicKey, parts.signature);
  } catch (err) {
    invalid(`the CSR signature cannot be checked: ${(err as Error).message}`, err);
  }
  if (!ok) invalid("the CSR signature does not verify against its public key");
  return { spki: parts.spki, publicKey };
}
