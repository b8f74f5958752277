/**
 * Explain a connection without sending it: what this agent would do with it (the route, from
 * `route`) and what the destination's agent would do (admission, from `admit`), with the
 * reasons. The same functions decide for the data path, so the two cannot disagree.
 */
import { parseSpiffe } from "@zt/identity";
import { endpointCandidates, formatHostPort, workloadIdentity, type AuthzDecision, type PolicyTrace, type Service, type Workload } from "@zt/state";
import { toProxyError } from "./errors.js";
import { admit, type AdmitContext, type Arrival } from "./policy.js";
import { route, type Route, type RouteContext } from "./route.js";

export type ExplainContext = RouteContext & AdmitContext & { readonly trustDomain: string };

export interface ExplainQuery {
  /** The source address (normalized). */
  readonly srcIp: string;
  /** A verified peer identity (SPIFFE id): explain only the destination side, as if a peer holding it connected from `srcIp`. */
  readonly identity?: string | undefined;
  readonly dstIp: string;
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
}

export interface OutboundExplained {
  /** The node whose agent routes it (this one). */
  readonly node: string;
  /** not-captured: the source is outside the mesh, so no agent takes its connection on this side. */
  readonly kind: "hbone" | "passthrough" | "refused" | "not-captured";
  /** Why this agent refuses it (not-captured: what its SOCKS5 port would answer). */
  readonly refused?: Refusal | undefined;
  readonly service?: { readonly hostname: string; readonly port: number; readonly endpoints: EndpointExplained[] } | undefined;
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
  /** allow: it would be carried; deny: a policy refuses it; refused: refused for another reason. */
  readonly verdict: "allow" | "deny" | "refused";
  /** One sentence: what happens and why. */
  readonly summary: string;
  readonly source?: WorkloadRef | undefined;
  readonly outbound?: OutboundExplained | undefined;
  readonly inbound?: InboundExplained | undefined;
  readonly notes: readonly string[];
}

export function explain(ctx: ExplainContext, q: ExplainQuery): Explanation {
  const query = { src: q.srcIp, ...(q.identity !== undefined ? { identity: q.identity } : {}), dst: formatHostPort(q.dstIp, q.dstPort) };
  return q.identity === undefined ? fromWorkload(ctx, q, query) : fromIdentity(ctx, q, q.identity, query);
}

/** A source given by address: this agent's route, then the destination's admission. */
function fromWorkload(ctx: ExplainContext, q: ExplainQuery, query: Explanation["query"]): Explanation {
  const notes: string[] = [];
  const srcWl = ctx.store.workloadByIp(q.srcIp);
  const source = srcWl && ref(srcWl, q.srcIp);
  let r: Route;
  try {
    r = route(ctx, { srcIp: q.srcIp, srcPort: 0, dstIp: q.dstIp, dstPort: q.dstPort });
  } catch (err) {
    const e = toProxyError(err);
    const refused = { code: e.code, message: e.message };
    // A source outside the mesh (no workload, or one not enrolled) is not captured: its
    // connection goes straight to the destination, and a mesh workload takes it in plaintext
    // on its node's 15006. Only SOCKS5 would bring it to this agent, which refuses it.
    if (e.code === "UNKNOWN_SOURCE" && (!srcWl || srcWl.protocol !== "HBONE")) {
      const outbound: OutboundExplained = { node: ctx.nodeName, kind: "not-captured", refused };
      notes.push(`${unknownSourceNote(ctx, srcWl)}; sent to this agent's SOCKS5 port it is refused (${e.code})`);
      const dst = ctx.store.workloadByIp(q.dstIp);
      if (dst?.protocol !== "HBONE") {
        const to = dst ? `${dst.namespace}/${dst.name}, outside the mesh too` : ctx.store.serviceByVip(q.dstIp) ? "the service through the node's own routing (kube-proxy), not the mesh" : "a destination the mesh does not know";
        return { query, verdict: "allow", summary: `not captured: it goes to ${to}; no agent decides it`, source, outbound, notes };
      }
      const inbound = admission(ctx, { listener: "plaintext", node: dst.node, srcAddr: q.srcIp }, q.srcIp, undefined, q);
      return { query, ...verdictOf(inbound, `not captured: it reaches ${dst.namespace}/${dst.name} in plaintext; ${inboundSummary(inbound)}`), source, outbound, inbound, notes };
    }
    if (e.code === "UNKNOWN_SOURCE") notes.push(unknownSourceNote(ctx, srcWl));
    // Why no endpoint could be chosen: each one with why it was skipped.
    const svc = e.code === "NO_HEALTHY_ENDPOINT" ? ctx.store.serviceByVip(q.dstIp) : undefined;
    const outbound: OutboundExplained = { node: ctx.nodeName, kind: "refused", refused, ...(svc ? { service: serviceOf(ctx, svc, q.dstPort) } : {}) };
    return { query, verdict: "refused", summary: `refused by the source's agent: ${e.code}: ${e.message}`, source, outbound, notes };
  }
  const outbound = outboundOf(ctx, r, q);
  if (r.kind === "passthrough") {
    const to = r.dst ? `${r.dst.namespace}/${r.dst.name}, a workload outside the mesh (protocol ${r.dst.protocol})` : `${formatHostPort(r.ip, r.port)}, which the mesh does not know (OUTBOUND_TRAFFIC_POLICY ALLOW_ANY)`;
    notes.push("passthrough: plain TCP from the pod's own address; no destination agent admits it and no policy applies");
    return { query, verdict: "allow", summary: `passed through to ${to}`, source, outbound, notes };
  }
  const inbound = admission(ctx, { listener: "hbone", node: r.dst.node, identity: workloadIdentity(r.src), srcAddr: q.srcIp }, q.srcIp, workloadIdentity(r.src), { dstIp: r.ip, dstPort: r.port });
  if (r.dst.node !== ctx.nodeName) notes.push(`the inbound part is decided by node ${r.dst.node}'s agent; explained here from this agent's copy of the mesh`);
  const via = r.service ? `${r.service.hostname} → ${r.dst.namespace}/${r.dst.name}` : `${r.dst.namespace}/${r.dst.name}`;
  return { query, ...verdictOf(inbound, `HBONE to ${via} at ${formatHostPort(r.ip, r.port)}; ${inboundSummary(inbound)}`), source, outbound, inbound, notes };
}

/** A verified identity from an address: the destination's admission only (the source's route is its own agent's). */
function fromIdentity(ctx: ExplainContext, q: ExplainQuery, identity: string, query: Explanation["query"]): Explanation {
  const notes: string[] = [];
  const parts = parseSpiffe(identity);
  if (!parts) {
    const message = `${JSON.stringify(identity.slice(0, 256))} is not a workload identity: expected spiffe://<trust domain>/ns/<namespace>/sa/<service account>`;
    return { query, verdict: "refused", summary: message, notes: [], inbound: { node: "", listener: "hbone", source: { address: q.srcIp }, policies: [], refused: { code: "CLIENT_IDENTITY_INVALID", message } } };
  }
  const dst = ctx.store.workloadByIp(q.dstIp);
  const node = dst?.node ?? ctx.nodeName;
  if (parts.trustDomain !== ctx.trustDomain) {
    const message = `the HBONE client ${identity} is from trust domain "${parts.trustDomain}", this mesh accepts "${ctx.trustDomain}"`;
    const inbound: InboundExplained = { node, listener: "hbone", source: { address: q.srcIp, identity }, policies: [], refused: { code: "TRUST_DOMAIN_MISMATCH", message } };
    return { query, verdict: "refused", summary: `refused in the TLS handshake: ${message}`, inbound, notes };
  }
  if (!dst && ctx.store.serviceByVip(q.dstIp)) {
    notes.push("a service address resolves to an endpoint on the source's agent: give a workload address with an identity, or explain from the source's address (src= without identity)");
  }
  const srcWl = ctx.store.workloadByIp(q.srcIp);
  if (srcWl && workloadIdentity(srcWl) !== identity) {
    notes.push(`${q.srcIp} is ${srcWl.namespace}/${srcWl.name}'s, whose identity is ${workloadIdentity(srcWl)}: a peer proving ${identity} could not claim it, and the agent would weigh its own node address instead`);
  }
  const inbound = admission(ctx, { listener: "hbone", node, identity, srcAddr: q.srcIp }, q.srcIp, identity, q);
  return { query, ...verdictOf(inbound, inboundSummary(inbound)), ...(srcWl ? { source: ref(srcWl, q.srcIp) } : {}), inbound, notes };
}

function admission(ctx: ExplainContext, how: Arrival, srcIp: string, identity: string | undefined, to: { dstIp: string; dstPort: number }): InboundExplained {
  const parts = identity === undefined ? undefined : parseSpiffe(identity);
  const trace: PolicyTrace[] = [];
  const a = admit(ctx, how, { srcIdentity: parts, srcIp, dstIp: to.dstIp, dstPort: to.dstPort }, trace);
  return {
    node: how.node,
    listener: how.listener,
    source: { address: srcIp, ...(identity !== undefined ? { identity } : {}) },
    ...(a.dst ? { destination: ref(a.dst, to.dstIp) } : {}),
    policies: trace,
    ...(a.decision ? { decision: a.decision } : {}),
    ...(a.ok ? {} : { refused: { code: a.refusal.code, message: a.refusal.message } }),
  };
}

function verdictOf(inbound: InboundExplained, summary: string): { verdict: Explanation["verdict"]; summary: string } {
  const verdict = !inbound.refused ? "allow" : inbound.refused.code === "AUTHZ_DENIED" ? "deny" : "refused";
  return { verdict, summary };
}

function inboundSummary(i: InboundExplained): string {
  if (i.refused) return `refused by node ${i.node || "?"}'s agent: ${i.refused.code}: ${i.refused.message}`;
  const d = i.decision;
  const dry = d && d.dryRun.length > 0 ? `; dry-run ${d.dryRun.join(", ")} would ${(d.dryRunAllow ?? d.allow) ? "allow" : "deny"} it` : "";
  return `allowed by node ${i.node}'s agent (${d?.policy ? `${d.policy}, ` : ""}${d?.reason ?? "no policy"})${dry}`;
}

function outboundOf(ctx: ExplainContext, r: Route, q: ExplainQuery): OutboundExplained {
  return {
    node: ctx.nodeName,
    kind: r.kind,
    ...(r.service ? { service: serviceOf(ctx, r.service, q.dstPort) } : {}),
    ...(r.dst ? { destination: ref(r.dst, r.ip) } : {}),
    target: formatHostPort(r.ip, r.port),
    ...(r.kind === "hbone" ? { hbone: { peer: formatHostPort(r.ip, ctx.hbonePort), expectedIdentities: r.expected } } : {}),
  };
}

function serviceOf(ctx: ExplainContext, s: Service, port: number): NonNullable<OutboundExplained["service"]> {
  const all = endpointCandidates(ctx.store, s, port);
  let total = 0;
  for (const c of all) total += c.weight;
  const endpoints = all.map((c) => ({
    workload: ref(c.workload, c.workload.workloadIps[0] ?? ""),
    status: c.workload.status,
    ...(c.port !== undefined ? { port: c.port } : {}),
    weight: c.weight,
    chance: total > 0 ? c.weight / total : 0,
    ...(c.skipped ? { skipped: c.skipped } : {}),
  }));
  return { hostname: s.hostname, port, endpoints };
}

function unknownSourceNote(ctx: ExplainContext, w: Workload | undefined): string {
  if (!w) return "the source address is no workload the mesh knows: its traffic is not captured";
  if (w.node !== ctx.nodeName) return `the source runs on node ${w.node || "(none)"}: ask that node's agent (ztunnel explain --admin <its admin address>)`;
  return "the source is not enrolled in the mesh (protocol TCP): its traffic is not captured";
}

function ref(w: Workload, address: string): WorkloadRef {
  return { namespace: w.namespace, name: w.name, node: w.node, protocol: w.protocol, identity: workloadIdentity(w), address };
}
