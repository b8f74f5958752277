import { describe, expect, test } from "vitest";
import { ZtError } from "@zt/errors";
import { cachedTokenReviewer } from "./token-cache.js";
import type { Caller, TokenReviewer } from "./token-review.js";

// The TokenReview cache on a counting reviewer and a clock of the test's own.
const CALLER: Caller = { namespace: "istio-system", serviceAccount: "ztunnel", podName: "ztunnel-a" };
const jwt = (payload: object): string => `e30.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.sig`;

function setup(answer: (token: string) => Promise<Caller> = async () => CALLER, o: { maxEntries?: number } = {}) {
  let t = 1_000_000;
  const asked: string[] = [];
  const inner: TokenReviewer = { review: (token) => (asked.push(token), answer(token)) };
  const cache = cachedTokenReviewer(inner, { ttlMs: 10_000, now: () => t, ...o });
  return { cache, asked, advance: (ms: number) => void (t += ms), now: () => t };
}

describe("TokenReview cache", () => {
  test("one review per token while its answer is fresh; asked again once it is not", async () => {
    const { cache, asked, advance } = setup();
    expect(await cache.review("a")).toEqual(CALLER);
    expect(await cache.review("a")).toEqual(CALLER);
    advance(9_999);
    await cache.review("a");
    expect(asked).toEqual(["a"]);
    advance(1);
    await cache.review("a");
    await cache.review("b");
    expect(asked).toEqual(["a", "a", "b"]);
  });

  test("concurrent reviews of one token are one request", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { cache, asked } = setup(async () => (await gate, CALLER));
    const all = Promise.all(Array.from({ length: 100 }, () => cache.review("burst")));
    release();
    expect(await all).toHaveLength(100);
    expect(asked).toEqual(["burst"]);
  });

  test("a refusal is not kept: the next review asks again", async () => {
    let ok = false;
    const { cache, asked } = setup(async () => {
      if (!ok) throw new ZtError("CA_CALLER_UNAUTHENTICATED", "no");
      return CALLER;
    });
    await expect(cache.review("t")).rejects.toThrow("no");
    ok = true;
    expect(await cache.review("t")).toEqual(CALLER);
    expect(asked).toEqual(["t", "t"]);
  });

  test("never past the token's own expiry, and an expired token is not kept at all", async () => {
    const { cache, asked, advance, now } = setup();
    const soon = jwt({ exp: Math.floor(now() / 1000) + 2 });
    await cache.review(soon);
    advance(1_000);
    await cache.review(soon);
    expect(asked).toHaveLength(1);
    advance(1_500);
    await cache.review(soon);
    expect(asked).toHaveLength(2);
    const gone = jwt({ exp: Math.floor(now() / 1000) - 1 });
    await cache.review(gone);
    await cache.review(gone);
    expect(asked).toHaveLength(4);
    expect(cache.size()).toBe(0);
  });

  test("at most maxEntries answers, the oldest dropped first", async () => {
    const { cache, asked } = setup(undefined, { maxEntries: 2 });
    for (const t of ["1", "2", "3"]) await cache.review(t);
    expect(cache.size()).toBe(2);
    await cache.review("3");
    await cache.review("1");
    expect(asked).toEqual(["1", "2", "3", "1"]);
  });
});
