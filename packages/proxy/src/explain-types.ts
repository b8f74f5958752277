/** What `explain()` answers, as JSON-ready objects (GET /debug/explain, ztunnel explain). */
import type { AuthzDecision, PolicyTrace } from "@zt/state";
import type { AdmitContext } from "./policy.js";
import type { RouteContext } from "./route.js";

export type ExplainContext = RouteContext & AdmitContext & { readonly trustDomain: string };

export interface ExplainQuery {
  /** The source address (normalized). */
  readonly srcIp: string;
  /** A verified peer identity (SPIFFE id): explain only the destination side, as if a peer holding it connected from `srcIp`. */
  readonly identity?: string | undefined;
  /** The destination address (normalized), or with `dstHost` a service hostname's VIP once resolved. */
  readonly dstIp: string;
  /** A service hostname, resolved to its VIP as SOCKS5 resolves one (`dstIp` is then ignored). */
  readonly dstHost?: string | undefined;
  readonly dstPort: number;
}

export interface WorkloadRef {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly protocol: string;
  readonly identity: string;
  readonly address: string;
}

export interface Refusal {
  readonly code: string;
  readonly message: string;
}

export interface EndpointExplained {
  readonly workload: WorkloadRef;
  readonly status: string;
  /** The port dialled for the service port, when this endpoint serves it. */
  readonly port?: number | undefined;
  readonly weight: number;
  /** Chance of being chosen for a new connection (0..1). */
  readonly chance: number;
  readonly skipped?: "unhealthy" | "no-port" | undefined;
  /** What the endpoint's agent would decide for this connection, when chosen (passthrough: no agent decides). */
  readonly admission?: EndpointAdmission | undefined;
}

export interface EndpointAdmission {
  readonly verdict: "allow" | "deny" | "refused";
  /** The deciding policy, or the refusal's code. */
  readonly policy?: string | undefined;
  readonly reason?: string | undefined;
  readonly code?: string | undefined;
}

export interface ServiceExplained {
  readonly hostname: string;
  readonly port: number;
  /** The first MAX_ENDPOINTS endpoints; `total` counts them all. */
  readonly endpoints: EndpointExplained[];
  readonly total: number;
  /** Over every endpoint that can be chosen: how many would be allowed, denied, refused. */
  readonly verdicts?: { readonly allow: number; readonly deny: number; readonly refused: number } | undefined;
}

export interface OutboundExplained {
  /** The node whose agent routes it (this one). */
  readonly node: string;
  /** not-captured: the source is outside the mesh, so no agent takes its connection on this side. */
  readonly kind: "hbone" | "passthrough" | "refused" | "not-captured";
  /** Why this agent refuses it (not-captured: what its SOCKS5 port would answer). */
  readonly refused?: Refusal | undefined;
  readonly service?: ServiceExplained | undefined;
  /** The workload dialled (the chosen endpoint of a service), when the mesh knows it. */
  readonly destination?: WorkloadRef | undefined;
  /** What is dialled: ip:port (over HBONE, the CONNECT authority). */
  readonly target?: string | undefined;
  readonly hbone?: { readonly peer: string; readonly expectedIdentities: readonly string[] } | undefined;
}

export interface InboundExplained {
  /** The node whose agent admits it: the destination workload's. */
  readonly node: string;
  readonly listener: "hbone" | "plaintext";
  readonly source: { readonly address: string; readonly identity?: string | undefined };
  readonly destination?: WorkloadRef | undefined;
  /** Every policy that applies to the destination, as it was weighed (rule: the first that matched, or -1). */
  readonly policies: readonly PolicyTrace[];
  readonly decision?: AuthzDecision | undefined;
  readonly refused?: Refusal | undefined;
}

export interface Explanation {
  readonly query: { readonly src: string; readonly identity?: string | undefined; readonly dst: string };
  /**
   * allow: it would be carried; deny: a policy refuses it; refused: refused for another reason;
   * mixed: a service whose endpoints would decide differently, chosen per connection.
   */
  readonly verdict: "allow" | "deny" | "refused" | "mixed";
  /** One sentence: what happens and why. */
  readonly summary: string;
  readonly source?: WorkloadRef | undefined;
  readonly outbound?: OutboundExplained | undefined;
  readonly inbound?: InboundExplained | undefined;
  readonly notes: readonly string[];
}
