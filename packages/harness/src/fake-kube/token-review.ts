/**
 * The FAKE API server's service-account tokens and TokenReview
 * (POST /apis/authentication.k8s.io/v1/tokenreviews), with the real one's semantics: a
 * token authenticates only for an audience it was minted for, before it expires, and,
 * when bound to a pod, while that pod exists with the same uid. A token that does not
 * authenticate is no HTTP error: the answer is 201 with `authenticated: false` and
 * `status.error`. Tokens are opaque strings here (the real ones are JWTs).
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { FakeStore } from "./store.js";

/** What the API server's own audience is when a review names none. */
export const API_SERVER_AUDIENCE = "https://kubernetes.default.svc.cluster.local";

export interface ServiceAccountTokenSpec {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Default ["istio-ca"]. */
  readonly audiences?: readonly string[];
  /** The pod the token is bound to (a projected token names its pod). */
  readonly pod?: { readonly name: string; readonly uid: string };
  /** Default: an hour from now. */
  readonly expiresAt?: Date;
}

interface Minted extends ServiceAccountTokenSpec {
  readonly audiences: readonly string[];
  readonly expiresAt: Date;
  readonly saUid: string;
}

export interface TokenReviewStatus {
  readonly authenticated: boolean;
  readonly user?: { username: string; uid: string; groups: string[]; extra: Record<string, string[]> };
  readonly audiences?: string[];
  readonly error?: string;
}

export class FakeServiceAccountTokens {
  private readonly minted = new Map<string, Minted>();
  private readonly saUids = new Map<string, string>();
  /** TokenReviews answered so far. */
  reviews = 0;

  constructor(private readonly store: FakeStore) {}

  /** A new token for `spec`; tokens of one service account share its uid. */
  mint(spec: ServiceAccountTokenSpec): string {
    const sa = `${spec.namespace}/${spec.serviceAccount}`;
    let saUid = this.saUids.get(sa);
    if (!saUid) this.saUids.set(sa, (saUid = randomUUID()));
    const token = `fake-sa-${randomBytes(24).toString("base64url")}`;
    this.minted.set(token, { ...spec, audiences: spec.audiences ?? ["istio-ca"], expiresAt: spec.expiresAt ?? new Date(Date.now() + 3_600_000), saUid });
    return token;
  }

  review(token: string, audiences: readonly string[]): TokenReviewStatus {
    this.reviews++;
    const wanted = audiences.length > 0 ? audiences : [API_SERVER_AUDIENCE];
    const t = this.minted.get(token);
    const refuse = (why: string): TokenReviewStatus => ({ authenticated: false, error: `[invalid bearer token, ${why}]` });
    if (!t) return refuse("square/go-jose: error in cryptographic primitive");
    const common = wanted.filter((a) => t.audiences.includes(a));
    if (common.length === 0) return refuse(`token audiences ${JSON.stringify(t.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}`);
    if (t.expiresAt.getTime() <= Date.now()) return refuse("service account token has expired");
    if (t.pod) {
      const pod = this.store.get(this.store.resource("pods"), t.namespace, t.pod.name);
      if (!pod) return refuse(`pods "${t.pod.name}" not found`);
      if (pod.metadata.uid !== t.pod.uid) return refuse(`the UID in the bound object reference (${t.pod.uid}) does not match the UID in record. The object might have been deleted and then recreated`);
    }
    const extra: Record<string, string[]> = {};
    if (t.pod) {
      extra["authentication.kubernetes.io/pod-name"] = [t.pod.name];
      extra["authentication.kubernetes.io/pod-uid"] = [t.pod.uid];
    }
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${t.namespace}:${t.serviceAccount}`,
        uid: t.saUid,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${t.namespace}`, "system:authenticated"],
        extra,
      },
      audiences: common,
    };
  }
}

/** The answer to a TokenReview body, or why the body is no TokenReview (a 400). */
export function answerTokenReview(tokens: FakeServiceAccountTokens, raw: string): { status: number; body: unknown } | { error: string } {
  let body: { apiVersion?: unknown; kind?: unknown; spec?: { token?: unknown; audiences?: unknown } };
  try {
    body = JSON.parse(raw) as typeof body;
  } catch (err) {
    return { error: `the body is no JSON: ${(err as Error).message}` };
  }
  if (body?.kind !== "TokenReview") return { error: `the body's kind is ${JSON.stringify(body?.kind)}, not "TokenReview"` };
  const token = body.spec?.token;
  if (typeof token !== "string" || token === "") return { error: "spec.token: Required value" };
  const audiences = Array.isArray(body.spec?.audiences) ? body.spec.audiences.filter((a): a is string => typeof a === "string") : [];
  const status = tokens.review(token, audiences);
  return {
    status: 201,
    body: { kind: "TokenReview", apiVersion: "authentication.k8s.io/v1", metadata: { creationTimestamp: null }, spec: { token, ...(audiences.length ? { audiences } : {}) }, status },
  };
}
