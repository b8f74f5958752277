/**
 * The CA side of IstioCertificateService/CreateCertificate, with istiod's rules: the
 * caller is whoever its bearer token says (TokenReview); a node agent may ask for a pod's
 * identity (ImpersonatedIdentity) only when its service account is a trusted node account,
 * its own pod exists with the token's uid, and a pod with that identity, not Failed, runs
 * on its node. The CSR must ask for exactly the identity granted. A refusal tells the
 * client little (the code and an opaque message) and the log everything.
 */
import { X509Certificate } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ZtError, type ErrorCode } from "@zt/errors";
import { formatSpiffe, parseSpiffe, verifyCsr, type CertificateSource } from "@zt/identity";
import type { CaRequest, CaResponse } from "@zt/istio";
import type { PodLookup } from "./pod-index.js";
import { bearerToken, type Caller, type TokenReviewer } from "./token-review.js";

export interface CaServerOptions {
  /** The signing CA (the built-in one). */
  readonly signer: CertificateSource;
  readonly trustDomain: string;
  readonly tokens: TokenReviewer;
  readonly pods: PodLookup;
  /** "namespace/serviceAccount" of the node agents allowed to impersonate; default istio-system/ztunnel. */
  readonly trustedNodeAccounts?: readonly string[];
  /** Longest certificate lifetime granted; longer requests are shortened to it. */
  readonly maxTtlMs: number;
  readonly logger: Logger;
}

export interface CaServerStats {
  readonly issued: number;
  readonly unauthenticated: number;
  readonly forbidden: number;
  readonly invalid: number;
  readonly failed: number;
}

export interface CaServer {
  /** For `server.addService(CA_SERVICE, implementation)`. */
  readonly implementation: grpc.UntypedServiceImplementation;
  stats(): CaServerStats;
}

export const DEFAULT_TRUSTED_NODE_ACCOUNTS: readonly string[] = ["istio-system/ztunnel"];

/** A refused request: what the client is told, and what the log says. */
class Refusal extends Error {
  constructor(
    readonly status: grpc.status,
    readonly client: string,
    readonly code: ErrorCode,
    reason: string,
  ) {
    super(reason);
  }
}

export function createCaServer(o: CaServerOptions): CaServer {
  const trusted = new Set(o.trustedNodeAccounts ?? DEFAULT_TRUSTED_NODE_ACCOUNTS);
  const counts = { issued: 0, unauthenticated: 0, forbidden: 0, invalid: 0, failed: 0 };
  const forbidden = (reason: string): Refusal => new Refusal(grpc.status.PERMISSION_DENIED, "the caller may not have a certificate for this identity", "CA_CALLER_FORBIDDEN", reason);
  const invalid = (reason: string): Refusal => new Refusal(grpc.status.INVALID_ARGUMENT, reason, "CSR_INVALID", reason);

  async function authenticate(metadata: grpc.Metadata): Promise<Caller> {
    const token = bearerToken(metadata);
    if (!token) throw new Refusal(grpc.status.UNAUTHENTICATED, "authentication failed", "CA_CALLER_UNAUTHENTICATED", "no bearer token in the authorization metadata");
    try {
      return await o.tokens.review(token);
    } catch (err) {
      if (err instanceof ZtError && err.code === "CA_CALLER_UNAUTHENTICATED") throw new Refusal(grpc.status.UNAUTHENTICATED, "authentication failed", err.code, err.message);
      const reason = err instanceof Error ? err.message : String(err);
      throw new Refusal(grpc.status.UNAVAILABLE, "cannot authenticate the caller now; try again", "TOKEN_REVIEW_FAILED", reason);
    }
  }

  /** The identity the caller may have: its own, or a pod's on its node. */
  function grant(caller: Caller, requested: unknown): string {
    const own = `${caller.namespace}/${caller.serviceAccount}`;
    if (requested === undefined || requested === "") return formatSpiffe({ trustDomain: o.trustDomain, namespace: caller.namespace, serviceAccount: caller.serviceAccount });
    if (typeof requested !== "string") throw invalid("metadata ImpersonatedIdentity is not a string");
    const id = parseSpiffe(requested);
    if (!id) throw invalid(`ImpersonatedIdentity "${requested}" is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>`);
    if (id.trustDomain !== o.trustDomain) throw forbidden(`${own} asked for ${requested}, outside trust domain ${o.trustDomain}`);
    if (!trusted.has(own)) throw forbidden(`${own} asked for ${requested} but is not a trusted node account (${[...trusted].join(", ")})`);
    if (!caller.podName || !caller.podUid) throw forbidden(`${own} asked for ${requested} with a token not bound to a pod`);
    const self = o.pods.pod(caller.namespace, caller.podName);
    if (!self || self.uid !== caller.podUid) {
      throw forbidden(`${own} asked for ${requested} from pod ${caller.namespace}/${caller.podName} (uid ${caller.podUid}), which ${self ? `now has uid ${self.uid}` : "does not exist"}`);
    }
    if (!self.nodeName) throw forbidden(`${own} asked for ${requested} from pod ${caller.namespace}/${caller.podName}, which is on no node`);
    const match = o.pods.podsOnNode(self.nodeName).some((p) => p.namespace === id.namespace && p.serviceAccount === id.serviceAccount && p.phase !== "Failed");
    if (!match) throw forbidden(`${own} on node ${self.nodeName} asked for ${requested}, but no pod of service account ${id.namespace}/${id.serviceAccount} (not Failed) runs there`);
    return requested;
  }

  async function handle(call: grpc.ServerUnaryCall<CaRequest, CaResponse>): Promise<{ caller: Caller; identity: string; chain: string[] }> {
    const caller = await authenticate(call.metadata);
    const identity = grant(caller, call.request.metadata["ImpersonatedIdentity"]);
    let uris: string[];
    try {
      uris = (await verifyCsr(call.request.csr)).uris;
    } catch (err) {
      throw invalid(`the CSR is unusable: ${(err as Error).message}`);
    }
    if (uris.length !== 1 || uris[0] !== identity) throw invalid(`the CSR asks for ${uris.length ? uris.join(", ") : "no URI SAN"}, not for ${identity}`);
    const asked = call.request.validity_duration * 1000;
    const ttlMs = asked > 0 ? Math.min(asked, o.maxTtlMs) : o.maxTtlMs;
    const signed = await o.signer.sign(call.request.csr, identity, ttlMs);
    const last = new X509Certificate(signed.certChain.at(-1)!);
    const root = signed.roots.find((r) => last.checkIssued(new X509Certificate(r))) ?? signed.roots[0];
    return { caller, identity, chain: [...signed.certChain, ...(root ? [root] : [])] };
  }

  const CreateCertificate: grpc.handleUnaryCall<CaRequest, CaResponse> = (call, callback) => {
    handle(call).then(
      ({ caller, identity, chain }) => {
        counts.issued++;
        o.logger.info({ caller: `${caller.namespace}/${caller.serviceAccount}`, pod: caller.podName, identity }, "certificate issued");
        callback(null, { cert_chain: chain });
      },
      (err: unknown) => {
        if (err instanceof Refusal) {
          if (err.status === grpc.status.UNAUTHENTICATED) counts.unauthenticated++;
          else if (err.status === grpc.status.PERMISSION_DENIED) counts.forbidden++;
          else if (err.status === grpc.status.INVALID_ARGUMENT) counts.invalid++;
          else counts.failed++;
          o.logger.warn({ code: err.code, reason: err.message, peer: call.getPeer() }, "certificate request refused");
          return callback({ code: err.status, details: err.client });
        }
        counts.failed++;
        const code = err instanceof ZtError ? err.code : "INTERNAL";
        o.logger.error({ code, err, peer: call.getPeer() }, "certificate signing failed");
        callback({ code: grpc.status.INTERNAL, details: "the CA could not sign the certificate" });
      },
    );
  };

  return { implementation: { CreateCertificate }, stats: () => ({ ...counts }) };
}
