/**
 * Who presents a bearer token, as the Kubernetes API server says (TokenReview, audience
 * istio-ca by default): a service account, and the pod a projected token is bound to.
 */
import { AuthenticationV1Api, type KubeConfig } from "@kubernetes/client-node";
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

export function createTokenReviewer(kc: KubeConfig, audience = "istio-ca"): TokenReviewer {
  const api = kc.makeApiClient(AuthenticationV1Api);
  return {
    async review(token) {
      let status;
      try {
        const answer = await api.createTokenReview({ body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences: [audience] } } });
        status = answer.status;
      } catch (err) {
        throw new ZtError("TOKEN_REVIEW_FAILED", `the TokenReview at ${kc.getCurrentCluster()?.server ?? "the API server"} failed: ${(err as Error).message}`, { cause: err });
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
