/**
 * A minimal DER reader: where each element starts and ends, so that a signature is
 * checked over the bytes exactly as they were signed, and parts of other structures (a
 * CSR's public key, a CA's subject) are copied byte for byte. node-forge's pki layer
 * cannot do this for us: it reads RSA keys only.
 */

export interface Tlv {
  /** The identifier octet: class, constructed bit and a tag number below 31. */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the contents. */
  readonly end: number;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
  /** [0] constructed, context-specific (a certificate's version, a CSR's attributes). */
  CONTEXT_0: 0xa0,
  /** [3] constructed, context-specific (a certificate's extensions). */
  CONTEXT_3: 0xa3,
} as const;

/** The element at `offset`; throws (plain Error) when it is not DER or overruns `limit`. */
export function readTlv(buf: Uint8Array, offset = 0, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new Error("truncated DER element");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new Error("DER tag numbers above 30 are not used here");
  let length = buf[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    // 0x80 is BER's indefinite length; DER never uses it. Four octets cover 4 GiB.
    if (octets === 0 || octets > 4) throw new Error("unsupported DER length");
    if (contentStart + octets > limit) throw new Error("truncated DER length");
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + buf[contentStart + i]!;
    contentStart += octets;
  }
  const end = contentStart + length;
  if (end > limit) throw new Error("DER element runs past its container");
  return { tag, start: offset, contentStart, end };
}

/** The elements inside a constructed element, in order. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const t = readTlv(buf, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** `t`, after checking that it is there and has `tag`. */
export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new Error(`${what}: expected tag 0x${tag.toString(16)}, found ${t ? `0x${t.tag.toString(16)}` : "nothing"}`);
  return t;
}

/** The whole element (identifier, length and contents). */
export const whole = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end);

/** The contents only. */
export const contents = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.contentStart, t.end);
