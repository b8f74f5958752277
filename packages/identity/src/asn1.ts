/**
 * Building DER with node-forge's asn1 module (its encoder only: the pki layer, which
 * holds RSA keys only, is not used). Buffers in, Buffers out; forge works on binary strings.
 */
import forge from "node-forge";

const { asn1 } = forge;
export type Node = forge.asn1.Asn1;

const U = asn1.Class.UNIVERSAL;
const CONTEXT = asn1.Class.CONTEXT_SPECIFIC;
const bin = (b: Buffer): string => b.toString("binary");

export const seq = (value: Node[]): Node => asn1.create(U, asn1.Type.SEQUENCE, true, value);
export const set = (value: Node[]): Node => asn1.create(U, asn1.Type.SET, true, value);
export const oid = (dotted: string): Node => asn1.create(U, asn1.Type.OID, false, asn1.oidToDer(dotted).getBytes());
export const bool = (b: boolean): Node => asn1.create(U, asn1.Type.BOOLEAN, false, b ? "\xff" : "\x00");
export const nullValue = (): Node => asn1.create(U, asn1.Type.NULL, false, "");
export const smallInteger = (n: number): Node => asn1.create(U, asn1.Type.INTEGER, false, asn1.integerToDer(n).getBytes());
/** An INTEGER from its minimal two's-complement bytes in hex. */
export const integerHex = (hex: string): Node => asn1.create(U, asn1.Type.INTEGER, false, forge.util.hexToBytes(hex));
export const octets = (b: Buffer): Node => asn1.create(U, asn1.Type.OCTETSTRING, false, bin(b));
export const bitString = (b: Buffer, unusedBits = 0): Node =>
  asn1.create(U, asn1.Type.BITSTRING, false, String.fromCharCode(unusedBits) + bin(b));
export const utf8 = (s: string): Node => asn1.create(U, asn1.Type.UTF8, false, forge.util.encodeUtf8(s));

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050. */
export function time(d: Date): Node {
  return d.getUTCFullYear() < 2050
    ? asn1.create(U, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(U, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

/** [n] EXPLICIT (or a constructed IMPLICIT SET/SEQUENCE): a constructed context-specific wrapper. */
export const contextConstructed = (n: number, value: Node[]): Node => asn1.create(CONTEXT, n as forge.asn1.Type, true, value);
/** [n] IMPLICIT of a primitive type (a GeneralName's URI, a key identifier). */
export const contextPrimitive = (n: number, bytes: Buffer): Node => asn1.create(CONTEXT, n as forge.asn1.Type, false, bin(bytes));

/** An already encoded element, spliced in as it is (forge re-encodes it to the same bytes). */
export const fromDer = (der: Buffer): Node => asn1.fromDer(forge.util.createBuffer(bin(der)));
export const toDer = (node: Node): Buffer => Buffer.from(asn1.toDer(node).getBytes(), "binary");
export const oidFromDer = (contents: Buffer): string => asn1.derToOid(bin(contents));
