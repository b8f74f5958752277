import { describe, expect, test } from "vitest";
import { createPeerLimits, SHARED_PEER_SLOTS } from "./peer-limits.js";

const A = "spiffe://cluster.local/ns/default/sa/a";
const B = "spiffe://cluster.local/ns/default/sa/b";

describe("per-identity caps", () => {
  test("two workers sharing the counts hold one identity to one cap between them; another identity is apart", () => {
    const shared = new Int32Array(new SharedArrayBuffer(SHARED_PEER_SLOTS * 4));
    const opts = { maxConnectionsPerIdentity: 3, maxStreamsPerIdentity: 4 };
    const [one, two] = [createPeerLimits(opts, shared), createPeerLimits(opts, shared)];
    expect([one.openConnection(A), two.openConnection(A), one.openConnection(A), two.openConnection(A)]).toEqual([true, true, true, false]);
    expect(two.openConnection(B)).toBe(true);
    one.closeConnection(A);
    expect(two.openConnection(A)).toBe(true);
    expect([1, 2, 3, 4, 5].map((i) => (i % 2 ? one : two).openStream(A))).toEqual([true, true, true, true, false]);
    two.closeStream(A);
    expect(one.openStream(A)).toBe(true);
    // Each worker's usage is its own (the metrics add them up).
    expect(one.usage().get(A)).toMatchObject({ connections: 1, streams: 3 });
    expect(two.usage().get(A)).toMatchObject({ connections: 2, streams: 1 });
  });

  test("a close with nothing held gives nothing back (the cap is not loosened)", () => {
    const shared = new Int32Array(new SharedArrayBuffer(SHARED_PEER_SLOTS * 4));
    const l = createPeerLimits({ maxConnectionsPerIdentity: 1, maxStreamsPerIdentity: 1 }, shared);
    l.closeConnection(A);
    expect([l.openConnection(A), l.openConnection(A)]).toEqual([true, false]);
  });
});
