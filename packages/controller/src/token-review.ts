/**
 * Who presents a bearer token, as the Kubernetes API server says (TokenReview, audience
 * istio-ca by default): a service account, and the pod a projected token is bound to.
 * One request per certificate asked for, on kept-alive connections: the API client of
 * @kubernetes/client-node 1.x makes a new agent (a TLS handshake) per request, which made
 * a TokenReview cost more CPU than the signature.
 */
import https from "node:https";
import type { KubeConfig, V1TokenReviewStatus } from "@kubernetes/client-node";
import { ZtError } from "@zt/errors";

export interface Caller {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName?: string;
  readonly podUid?: string;
}

export interface TokenReviewer {
  /** Rejects with CA_CALLER_UNAUTHENTICATED (the API server's reason in the message) or TOKEN_REVIEW_FAILED. */
  review(token: string): Promise<Caller>;
}

const SA_PREFIX = "system:serviceaccount:";

const TIMEOUT_MS = 10_000;

export function createTokenReviewer(kc: KubeConfig, audience = "istio-ca"): TokenReviewer {
  const server = (kc.getCurrentCluster()?.server ?? "").replace(/\/+$/, "");
  let agent: https.Agent | undefined;
  /** POSTs the review; the kubeconfig's credentials are applied per request (an in-cluster token file rotates). */
  async function post(token: string): Promise<V1TokenReviewStatus | undefined> {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    agent ??= new https.Agent({ keepAlive: true, maxSockets: 16, ...pick(opts) });
    const body = JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences: [audience] } });
    return new Promise((resolve, reject) => {
      const req = https.request(`${server}/apis/authentication.k8s.io/v1/tokenreviews`, { method: "POST", agent, headers: { ...opts.headers, "content-type": "application/json", accept: "application/json" }, timeout: TIMEOUT_MS }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          if (res.statusCode !== 200 && res.statusCode !== 201) return reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
          try {
            resolve((JSON.parse(text) as { status?: V1TokenReviewStatus }).status);
          } catch {
            reject(new Error(`the answer is not JSON: ${text.slice(0, 100)}`));
          }
        });
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`no answer in ${TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }
  return {
    async review(token) {
      let status;
      try {
        status = await post(token);
      } catch (err) {
        throw new ZtError("TOKEN_REVIEW_FAILED", `the TokenReview at ${server || "the API server"} failed: ${(err as Error).message}`, { cause: err });
      }
      if (!status?.authenticated) {
        throw new ZtError("CA_CALLER_UNAUTHENTICATED", `the token does not authenticate for audience ${audience}: ${status?.error || "no reason given"}`);
      }
      if (status.audiences && !status.audiences.includes(audience)) {
        throw new ZtError("CA_CALLER_UNAUTHENTICATED", `the token authenticates for ${status.audiences.join(", ")}, not for audience ${audience}`);
      }
      const username = status.user?.username ?? "";
      const parts = username.startsWith(SA_PREFIX) ? username.slice(SA_PREFIX.length).split(":") : [];
      if (parts.length !== 2 || !parts[0] || !parts[1]) {
        throw new ZtError("CA_CALLER_UNAUTHENTICATED", `the token is not a service account's (user "${username}")`);
      }
      const extra = status.user?.extra ?? {};
      const podName = extra["authentication.kubernetes.io/pod-name"]?.[0];
      const podUid = extra["authentication.kubernetes.io/pod-uid"]?.[0];
      return { namespace: parts[0], serviceAccount: parts[1], ...(podName ? { podName } : {}), ...(podUid ? { podUid } : {}) };
    },
  };
}

/** The TLS settings of the kubeconfig, for the agent that keeps connections. */
function pick(o: https.RequestOptions): https.AgentOptions {
  const out: https.AgentOptions = {};
  if (o.ca !== undefined) out.ca = o.ca;
  if (o.cert !== undefined) out.cert = o.cert;
  if (o.key !== undefined) out.key = o.key;
  if (o.rejectUnauthorized !== undefined) out.rejectUnauthorized = o.rejectUnauthorized;
  return out;
}

/**
 * The bearer token of a call's `authorization` metadata, the one rule for the CA and xDS:
 * "Bearer" in any case, then the token, surrounding whitespace trimmed; undefined when there
 * is none (absent, another scheme, empty): the caller is unauthenticated without asking
 * TokenReview.
 */
export function bearerToken(md: { get(key: string): (string | Buffer)[] }): string | undefined {
  const v = md.get("authorization")[0];
  const s = (typeof v === "string" ? v : (v?.toString() ?? "")).trim();
  return /^bearer\s+(\S+)$/i.exec(s)?.[1];
}
