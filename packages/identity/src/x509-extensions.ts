/**
 * The X.509 v3 extensions the built-in CA writes, each with the criticality it has always
 * had here: basicConstraints, keyUsage and subjectAltName critical (a workload leaf has an
 * empty subject, so RFC 5280 wants its SAN critical), the rest not.
 */
import { createHash } from "node:crypto";
import { isIPv4, isIPv6, SocketAddress } from "node:net";
import { bitString, bool, contextPrimitive, octets, oid, seq, toDer, type Node } from "./asn1.js";
import { children, contents, expectTag, readTlv, TAG } from "./der.js";

export type Extension =
  | { readonly kind: "basicConstraints"; readonly ca: boolean }
  | {
      readonly kind: "keyUsage";
      readonly digitalSignature?: boolean;
      readonly keyEncipherment?: boolean;
      readonly keyCertSign?: boolean;
      readonly cRLSign?: boolean;
    }
  | { readonly kind: "extKeyUsage"; readonly serverAuth?: boolean; readonly clientAuth?: boolean }
  | { readonly kind: "subjectAltName"; readonly uri: string }
  /** A server's names: DNS names and IP addresses (a control plane's serving certificate). */
  | { readonly kind: "serverNames"; readonly dns: readonly string[]; readonly ips: readonly string[] }
  /** Of the certificate's own public key (RFC 5280 §4.2.1.2, method 1). */
  | { readonly kind: "subjectKeyIdentifier" }
  | { readonly kind: "authorityKeyIdentifier"; readonly keyIdentifier: Buffer };

export const OID = {
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** keyUsage bit numbers (RFC 5280 §4.2.1.3). */
const KEY_USAGE_BITS = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

/** An Extension: extnID, critical (only when true: DER omits a default), extnValue. */
function extension(id: string, critical: boolean, value: Node): Node {
  return seq([oid(id), ...(critical ? [bool(true)] : []), octets(toDer(value))]);
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split(".").map(Number));
  if (!isIPv6(ip) || ip.includes(".")) throw new Error(`not an IPv4 or plain IPv6 address: ${ip}`);
  const sock = new SocketAddress({ address: ip, family: "ipv6" });
  const [head = "", tail = ""] = sock.address.split("::");
  const groups = (x: string): string[] => (x === "" ? [] : x.split(":"));
  const h = groups(head);
  const t = groups(tail);
  const all = sock.address.includes("::") ? [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t] : h;
  return Buffer.from(all.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** SHA-1 of the subjectPublicKey bits of a DER SubjectPublicKeyInfo. */
export function keyIdentifier(spki: Buffer): Buffer {
  const outer = expectTag(readTlv(spki), TAG.SEQUENCE, "SubjectPublicKeyInfo");
  const key = expectTag(children(spki, outer)[1], TAG.BIT_STRING, "subjectPublicKey");
  return createHash("sha1").update(contents(spki, key).subarray(1)).digest();
}

/** A named-bit BIT STRING in DER: trailing zero bits dropped. */
function namedBits(bits: readonly number[]): Node {
  if (bits.length === 0) return bitString(Buffer.alloc(0));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return bitString(bytes, bytes.length * 8 - highest - 1);
}

export function extensionNode(e: Extension, spki: Buffer): Node {
  switch (e.kind) {
    case "basicConstraints":
      // cA defaults to FALSE, and DER leaves defaults out: a leaf's is an empty SEQUENCE.
      return extension(OID.basicConstraints, true, seq(e.ca ? [bool(true)] : []));
    case "keyUsage": {
      const bits = (Object.keys(KEY_USAGE_BITS) as (keyof typeof KEY_USAGE_BITS)[]).filter((k) => e[k]).map((k) => KEY_USAGE_BITS[k]);
      return extension(OID.keyUsage, true, namedBits(bits));
    }
    case "extKeyUsage":
      return extension(OID.extKeyUsage, false, seq([...(e.serverAuth ? [oid(OID.serverAuth)] : []), ...(e.clientAuth ? [oid(OID.clientAuth)] : [])]));
    case "subjectAltName":
      // GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String (SPIFFE ids are ASCII).
      return extension(OID.subjectAltName, true, seq([contextPrimitive(6, Buffer.from(e.uri, "ascii"))]));
    case "serverNames":
      // GeneralName dNSName: [2] IMPLICIT IA5String; iPAddress: [7] IMPLICIT OCTET STRING (4 or 16 bytes). Not critical: the subject names the server too.
      return extension(OID.subjectAltName, false, seq([...e.dns.map((d) => contextPrimitive(2, Buffer.from(d, "ascii"))), ...e.ips.map((ip) => contextPrimitive(7, ipBytes(ip)))]));
    case "subjectKeyIdentifier":
      return extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(spki)));
    case "authorityKeyIdentifier":
      // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING, ... }
      return extension(OID.authorityKeyIdentifier, false, seq([contextPrimitive(0, e.keyIdentifier)]));
  }
}
