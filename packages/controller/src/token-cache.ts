/**
 * TokenReview answers kept for a short while: an agent asks for a certificate per workload
 * of its node (a hundred at its start) and opens its xDS stream, all with one token; without
 * this, each was a POST to the API server. Only authenticated answers are kept, by the
 * token's SHA-256 (the token itself is not kept), until `ttlMs` or the token's own expiry,
 * whichever is first; concurrent reviews of one token share one request. A token revoked
 * meanwhile (its pod deleted) is still accepted until its entry expires.
 */
import { createHash } from "node:crypto";
import type { Caller, TokenReviewer } from "./token-review.js";

export interface TokenCacheOptions {
  /** How long an authenticated answer is kept; default 10 s. */
  readonly ttlMs?: number;
  /** Entries kept at most (the oldest go first); default 10,000. */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export function cachedTokenReviewer(inner: TokenReviewer, o: TokenCacheOptions = {}): TokenReviewer & { size(): number } {
  const ttlMs = o.ttlMs ?? 10_000;
  const maxEntries = o.maxEntries ?? 10_000;
  const now = o.now ?? Date.now;
  const kept = new Map<string, { readonly caller: Caller; readonly until: number }>();
  const asking = new Map<string, Promise<Caller>>();
  return {
    size: () => kept.size,
    review(token) {
      const key = createHash("sha256").update(token).digest("base64");
      const hit = kept.get(key);
      const t = now();
      if (hit && hit.until > t) return Promise.resolve(hit.caller);
      if (hit) kept.delete(key);
      const pending = asking.get(key);
      if (pending) return pending;
      const p = inner.review(token).then(
        (caller) => {
          asking.delete(key);
          const until = Math.min(t + ttlMs, expiryMs(token) ?? Infinity);
          if (until > now()) {
            kept.set(key, { caller, until });
            if (kept.size > maxEntries) kept.delete(kept.keys().next().value as string);
          }
          return caller;
        },
        (err: unknown) => {
          asking.delete(key);
          throw err;
        },
      );
      asking.set(key, p);
      return p;
    },
  };
}

/** The `exp` of a JWT's payload in ms (the API server verified the token; this only bounds the cache), or undefined. */
function expiryMs(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown }).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
