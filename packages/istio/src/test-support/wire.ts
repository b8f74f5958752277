/**
 * Protobuf bytes by hand, from field numbers, for the wire-compatibility tests: nothing
 * here knows the message definitions, so a wrong number in them fails the test.
 */
export const varint = (n: number | bigint): number[] => {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
};

export type Field = [number, "varint", number | bigint] | [number, "bytes", Uint8Array | string | Field[]];

/** Encodes fields in the order given; nested Field[] becomes a length-delimited message. */
export function msg(fields: Field[]): Buffer {
  const out: number[] = [];
  for (const [n, kind, v] of fields) {
    if (kind === "varint") out.push(...varint((n << 3) | 0), ...varint(v as number));
    else {
      const body = typeof v === "string" ? Buffer.from(v) : Array.isArray(v) ? msg(v) : Buffer.from(v);
      out.push(...varint((n << 3) | 2), ...varint(body.length), ...body);
    }
  }
  return Buffer.from(out);
}

/** A packed repeated varint field's body. */
export const packed = (xs: number[]): Uint8Array => Buffer.from(xs.flatMap((x) => varint(x)));

type Raw = [number, 0, bigint] | [number, 2, Uint8Array];

function rawFields(b: Uint8Array): Raw[] {
  const out: Raw[] = [];
  let i = 0;
  const read = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= b.length) throw new Error("truncated varint");
      const byte = b[i++]!;
      v |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const tag = Number(read());
    const wt = tag & 7;
    if (wt === 0) out.push([tag >> 3, 0, read()]);
    else if (wt === 2) {
      const len = Number(read());
      out.push([tag >> 3, 2, b.subarray(i, i + len)]);
      i += len;
    } else throw new Error(`wire type ${wt} not expected`);
  }
  return out;
}

export type Tree = [number, string | Tree[]][];

/**
 * Both sides as comparable trees, sorted by field number (encoders may order fields
 * differently): `actual` is parsed as deep as `expected` says a field is a message.
 */
export function trees(actual: Uint8Array, expected: Field[]): { actual: Tree; expected: Tree } {
  const norm = (t: Tree): Tree => t.map((f, k) => [f, k] as const).sort((a, b) => a[0][0] - b[0][0] || a[1] - b[1]).map(([f]) => f);
  const exp = (fields: Field[]): Tree =>
    norm(fields.map(([n, kind, v]): [number, string | Tree[]] => [n, kind === "varint" ? `v${BigInt(v as number)}` : Array.isArray(v) ? (exp(v) as unknown as Tree[]) : `b${Buffer.from(typeof v === "string" ? Buffer.from(v) : (v as Uint8Array)).toString("hex")}`]));
  const act = (b: Uint8Array, shape: Field[] | undefined): Tree => {
    const seen = new Map<number, number>();
    return norm(
      rawFields(b).map(([n, wt, v]): [number, string | Tree[]] => {
        const k = seen.get(n) ?? 0;
        seen.set(n, k + 1);
        const like = shape?.filter((f) => f[0] === n)[k];
        if (wt === 0) return [n, `v${v}`];
        if (like && Array.isArray(like[2])) return [n, act(v as Uint8Array, like[2]) as unknown as Tree[]];
        return [n, `b${Buffer.from(v as Uint8Array).toString("hex")}`];
      }),
    );
  };
  return { actual: act(actual, expected), expected: exp(expected) };
}
