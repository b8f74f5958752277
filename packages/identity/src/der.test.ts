import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { children, contents, readTlv, TAG, whole } from "./der.js";

describe("DER reader", () => {
  it("walks a real SubjectPublicKeyInfo (long-form lengths) and hands out its exact bytes", () => {
    const spki = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "der" });
    const outer = readTlv(spki);
    expect(outer).toMatchObject({ tag: TAG.SEQUENCE, start: 0, contentStart: 4, end: spki.length }); // 30 82 01 22
    const [alg, key] = children(spki, outer);
    expect(alg?.tag).toBe(TAG.SEQUENCE);
    expect(key?.tag).toBe(TAG.BIT_STRING);
    expect(Buffer.concat([spki.subarray(0, 4), whole(spki, alg!), whole(spki, key!)]).equals(spki)).toBe(true);
    expect(contents(spki, key!)[0]).toBe(0); // no unused bits
  });

  it("refuses what DER does not allow or what runs past its container", () => {
    expect(() => readTlv(Buffer.from([0x30, 0x80, 0x00, 0x00]))).toThrow(/unsupported DER length/); // BER indefinite length
    expect(() => readTlv(Buffer.from([0x30, 0x05, 0x01]))).toThrow(/runs past/);
    expect(() => readTlv(Buffer.from([0x30, 0x82, 0x01]))).toThrow(/truncated/);
    expect(() => readTlv(Buffer.from([0x1f, 0x01, 0x00]))).toThrow(/tag numbers/);
    // A child may not run past its parent even where the buffer goes on.
    const nested = Buffer.from([0x30, 0x02, 0x04, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00]);
    expect(() => children(nested, readTlv(nested))).toThrow(/runs past/);
  });
});
