/**
 * The CA's side of a PKCS#10 request: its public key, once its signature verified over
 * the CertificationRequestInfo exactly as it was signed. RSA and EC keys alike.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { ZtError } from "@zt/errors";
import { oidFromDer } from "./asn1.js";
import { children, contents, expectTag, readTlv, TAG, whole, type Tlv } from "./der.js";
import { pemToDer } from "./pem.js";
import { signatureAlgorithmByOid, verifyNative } from "./signing.js";

export interface VerifiedCsr {
  /** The requester's SubjectPublicKeyInfo, DER, byte for byte from the request. */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  /** The URI SANs the request asks for (its extensionRequest's subjectAltName), in order. */
  readonly uris: string[];
}

const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const SUBJECT_ALT_NAME = "2.5.29.17";
/** GeneralName's uniformResourceIdentifier: [6] IA5String, primitive. */
const URI_NAME = 0x86;

/** URI SANs of a CertificationRequestInfo's attributes ([0] of SEQUENCE {type, SET {Extensions}}). */
function requestedUris(der: Buffer, attributes: Tlv | undefined): string[] {
  if (!attributes || attributes.tag !== TAG.CONTEXT_0) return [];
  const uris: string[] = [];
  for (const attr of children(der, attributes)) {
    const [type, values] = children(der, expectTag(attr, TAG.SEQUENCE, "Attribute"));
    if (oidFromDer(contents(der, expectTag(type, TAG.OID, "attribute type"))) !== EXTENSION_REQUEST) continue;
    for (const exts of children(der, expectTag(values, TAG.SET, "attribute values"))) {
      for (const ext of children(der, expectTag(exts, TAG.SEQUENCE, "Extensions"))) {
        const parts = children(der, expectTag(ext, TAG.SEQUENCE, "Extension"));
        if (oidFromDer(contents(der, expectTag(parts[0], TAG.OID, "extnID"))) !== SUBJECT_ALT_NAME) continue;
        const value = contents(der, expectTag(parts.at(-1), TAG.OCTET_STRING, "extnValue"));
        for (const name of children(value, expectTag(readTlv(value), TAG.SEQUENCE, "GeneralNames"))) {
          if (name.tag === URI_NAME) uris.push(contents(value, name).toString("ascii"));
        }
      }
    }
  }
  return uris;
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
    parts = { info: whole(der, info!), spki: Buffer.from(whole(der, spki)), algOid: oidFromDer(contents(der, algOid)), signature: sigBits.subarray(1), uris: requestedUris(der, infoFields[3]) };
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
  return { spki: parts.spki, publicKey, uris: parts.uris };
}
