/**
 * What the CA needs from its own certificate that node's X509Certificate does not expose:
 * the subject Name as DER (the issuer of every leaf), the subjectKeyIdentifier (their
 * authorityKeyIdentifier) and the keyUsage bits. Read with the DER reader, for RSA and
 * EC certificates alike.
 */
import { oidFromDer } from "./asn1.js";
import { children, contents, expectTag, readTlv, TAG, whole, type Tlv } from "./der.js";
import { OID } from "./x509-extensions.js";

/** The TBSCertificate's fields, an absent explicit version counted as v1. */
function tbsFields(der: Buffer): { fields: Tlv[]; offset: number } {
  const cert = expectTag(readTlv(der), TAG.SEQUENCE, "Certificate");
  const tbs = expectTag(children(der, cert)[0], TAG.SEQUENCE, "TBSCertificate");
  const fields = children(der, tbs);
  return { fields, offset: fields[0]?.tag === TAG.CONTEXT_0 ? 1 : 0 };
}

/** The subject Name of a DER certificate, byte for byte. */
export function subjectNameOf(der: Buffer): Buffer {
  const { fields, offset } = tbsFields(der);
  return whole(der, expectTag(fields[offset + 4], TAG.SEQUENCE, "subject"));
}

/** The SubjectPublicKeyInfo of a DER certificate, byte for byte. */
export function spkiOf(der: Buffer): Buffer {
  const { fields, offset } = tbsFields(der);
  return whole(der, expectTag(fields[offset + 5], TAG.SEQUENCE, "subjectPublicKeyInfo"));
}

/** The extnValue contents (the DER inside the OCTET STRING) of extension `id`, if present. */
export function extensionValue(der: Buffer, id: string): Buffer | undefined {
  const { fields } = tbsFields(der);
  const wrapper = fields.find((f) => f.tag === TAG.CONTEXT_3);
  if (!wrapper) return undefined;
  const list = expectTag(children(der, wrapper)[0], TAG.SEQUENCE, "Extensions");
  for (const ext of children(der, list)) {
    const parts = children(der, expectTag(ext, TAG.SEQUENCE, "Extension"));
    const extnId = expectTag(parts[0], TAG.OID, "extnID");
    if (oidFromDer(contents(der, extnId)) !== id) continue;
    return contents(der, expectTag(parts.at(-1), TAG.OCTET_STRING, "extnValue"));
  }
  return undefined;
}

/** The keyIdentifier of the subjectKeyIdentifier extension, if present. */
export function subjectKeyIdOf(der: Buffer): Buffer | undefined {
  const value = extensionValue(der, OID.subjectKeyIdentifier);
  return value && contents(value, expectTag(readTlv(value), TAG.OCTET_STRING, "SubjectKeyIdentifier"));
}

/** Whether keyUsage allows keyCertSign; undefined when there is no keyUsage extension. */
export function allowsKeyCertSign(der: Buffer): boolean | undefined {
  const value = extensionValue(der, OID.keyUsage);
  if (!value) return undefined;
  const bits = contents(value, expectTag(readTlv(value), TAG.BIT_STRING, "KeyUsage"));
  // bits[0] counts the unused bits; keyCertSign is bit 5, 0x04 of the first byte.
  return ((bits[1] ?? 0) & 0x04) !== 0;
}
