/**
 * Who may read xDS from zt-controller: a node agent, that is a trusted node account (the
 * CA's list, CA_TRUSTED_NODE_ACCOUNTS) presenting a token bound to its pod (TokenReview).
 * The stream's node id must then name that pod (checked by the xDS server on the first
 * request, from `pod`). The reason of a refusal goes to the log, never to the client.
 */
import * as grpc from "@grpc/grpc-js";
import { ZtError } from "@zt/errors";
import { bearerToken, type TokenReviewer } from "./token-review.js";
import { XdsRefusal, type XdsCaller } from "./xds-server.js";

export function createXdsAuthenticator(tokens: TokenReviewer, trustedNodeAccounts: readonly string[]): (md: grpc.Metadata) => Promise<XdsCaller> {
  const trusted = new Set(trustedNodeAccounts);
  return async (md) => {
    const token = bearerToken(md);
    if (!token) throw new XdsRefusal(grpc.status.UNAUTHENTICATED, "no bearer token in the authorization metadata");
    let caller;
    try {
      caller = await tokens.review(token);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      // The API server down is not the client's fault: UNAVAILABLE, so it retries without an error of its own.
      if (err instanceof ZtError && err.code === "CA_CALLER_UNAUTHENTICATED") throw new XdsRefusal(grpc.status.UNAUTHENTICATED, reason);
      throw new XdsRefusal(grpc.status.UNAVAILABLE, reason, "TOKEN_REVIEW_FAILED");
    }
    const own = `${caller.namespace}/${caller.serviceAccount}`;
    if (!trusted.has(own)) throw new XdsRefusal(grpc.status.PERMISSION_DENIED, `${own} is not a trusted node account (${[...trusted].join(", ")})`);
    if (!caller.podName) throw new XdsRefusal(grpc.status.PERMISSION_DENIED, `${own} presented a token not bound to a pod`);
    return { name: `${own} (pod ${caller.podName})`, pod: `${caller.podName}.${caller.namespace}` };
  };
}
