/**
 * Explain a connection without sending it: what this agent would do with it (the route, from
 * `route`) and what the destination's agent would do (admission, from `admit`), with the
 * reasons. The same functions decide for the data path. Where the data path draws (a
 * service's endpoint, per connection), every endpoint is judged, and the verdict is `mixed`
 * when they would not all decide alike. Given an identity and an address, source-IP rules are
 * weighed against that address, which the data path uses only when it is a workload of that
 * identity: a note says so otherwise.
 */
import { parseSpiffe } from "@zt/identity";
import { endpointCandidates, formatHostPort, workloadIdentity, type EndpointCandidate, type PolicyTrace, type Service, type Workload } from "@zt/state";
import { ProxyError, toProxyError } from "./errors.js";
import type { EndpointAdmission, EndpointExplained, ExplainContext, Explanation, ExplainQuery, InboundExplained, OutboundExplained, Refusal, ServiceExplained, WorkloadRef } from "./explain-types.js";
import { admit, type Admission, type Arrival } from "./policy.js";
import { hostVip, pickIp, route, type Route } from "./route.js";

/** Endpoints listed per service (the verdicts count them all). */
const MAX_ENDPOINTS = 100;

export function explain(ctx: ExplainContext, asked: ExplainQuery): Explanation {
  const query = { src: asked.srcIp, ...(asked.identity !== undefined ? { identity: asked.identity } : {}), dst: asked.dstHost !== undefined ? `${asked.dstHost}:${asked.dstPort}` : formatHostPort(asked.dstIp, asked.dstPort) };
  const vip = asked.dstHost === undefined ? asked.dstIp : hostVip(ctx.store, asked.dstHost);
  if (vip instanceof ProxyError) {
    const outbound: OutboundExplained = { node: ctx.nodeName, kind: "refused", refused: { code: vip.code, message: vip.message } };
    return { query, verdict: "refused", summary: `${vip.code}: ${vip.message}`, outbound, notes: ["a hostname is resolved as SOCKS5 resolves one: a service hostname of the mesh, to its first VIP"] };
  }
  const q = { ...asked, dstIp: vip };
  const notes = asked.dstHost === undefined ? [] : [`${asked.dstHost} is the service at ${vip} (its first VIP), as SOCKS5 resolves it`];
  const e = q.identity === undefined ? fromWorkload(ctx, q, query) : fromIdentity(ctx, q, q.identity, query);
  return notes.length === 0 ? e : { ...e, notes: [...notes, ...e.notes] };
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
    if (e.code === "UNKNOWN_SOURCE" && (!srcWl || srcWl.protocol !== "HBONE")) return notCaptured(ctx, q, query, srcWl, refused);
    if (e.code === "UNKNOWN_SOURCE") notes.push(unknownSourceNote(ctx, srcWl));
    // Why no endpoint could be chosen: each one with why it was skipped.
    const svc = e.code === "NO_HEALTHY_ENDPOINT" ? ctx.store.serviceByVip(q.dstIp) : undefined;
    const outbound: OutboundExplained = { node: ctx.nodeName, kind: "refused", refused, ...(svc ? { service: serviceOf(ctx, svc, q.dstPort) } : {}) };
    return { query, verdict: "refused", summary: `refused by the source's agent: ${e.code}: ${e.message}`, source, outbound, notes };
  }
  const srcId = workloadIdentity(r.src);
  const srcIdentity = parseSpiffe(srcId);
  const outbound = outboundOf(ctx, r, q, (c, port) => {
    if (c.workload.protocol !== "HBONE") return undefined;
    const how: Arrival = { listener: "hbone", node: c.workload.node, identity: srcId, srcAddr: q.srcIp };
    return verdictFor(admit(ctx, how, { srcIdentity, srcIp: q.srcIp, dstIp: pickIp(c.workload, q.dstIp), dstPort: port }));
  });
  const mixed = outbound.service && serviceVerdict(outbound.service, "");
  if (r.service && mixed?.verdict === "mixed") notes.push(`the endpoint is chosen per connection and they would not all decide alike (${mixed.summary}); the route and admission below are one draw`);
  if (r.kind === "passthrough") {
    const to = r.dst ? `${r.dst.namespace}/${r.dst.name}, a workload outside the mesh (protocol ${r.dst.protocol})` : `${formatHostPort(r.ip, r.port)}, which the mesh does not know (OUTBOUND_TRAFFIC_POLICY ALLOW_ANY)`;
    notes.push("passthrough: plain TCP from the pod's own address; no destination agent admits it and no policy applies");
    if (mixed?.verdict === "mixed") return { query, verdict: "mixed", summary: `passed through to ${to} this time; ${mixed.summary}`, source, outbound, notes };
    return { query, verdict: "allow", summary: `passed through to ${to}`, source, outbound, notes };
  }
  const inbound = admission(ctx, { listener: "hbone", node: r.dst.node, identity: srcId, srcAddr: q.srcIp }, q.srcIp, srcId, { dstIp: r.ip, dstPort: r.port });
  if (r.dst.node !== ctx.nodeName) notes.push(`the inbound part is decided by node ${r.dst.node}'s agent; explained here from this agent's copy of the mesh`);
  const via = r.service ? `${r.service.hostname} → ${r.dst.namespace}/${r.dst.name}` : `${r.dst.namespace}/${r.dst.name}`;
  const one = verdictOf(inbound, `HBONE to ${via} at ${formatHostPort(r.ip, r.port)}; ${inboundSummary(inbound)}`);
  if (mixed?.verdict === "mixed") return { query, verdict: "mixed", summary: `${one.summary}; but ${mixed.summary}`, source, outbound, inbound, notes };
  return { query, ...one, source, outbound, inbound, notes };
}

/**
 * A source outside the mesh (no workload, or one not enrolled) is not captured: its connection
 * goes straight to the destination, and a mesh workload takes it in plaintext on its node's
 * 15006. Only SOCKS5 would bring it to this agent, which refuses it (`refused`).
 */
function notCaptured(ctx: ExplainContext, q: ExplainQuery, query: Explanation["query"], srcWl: Workload | undefined, refused: Refusal): Explanation {
  const source = srcWl && ref(srcWl, q.srcIp);
  const outbound: OutboundExplained = { node: ctx.nodeName, kind: "not-captured", refused };
  const notes = [`${unknownSourceNote(ctx, srcWl)}; sent to this agent's SOCKS5 port it is refused (${refused.code})`];
  const svc = ctx.store.serviceByVip(q.dstIp);
  if (svc) {
    // The node's own routing (kube-proxy) picks an endpoint; a mesh one takes it in plaintext.
    const service = serviceOf(ctx, svc, q.dstPort, (c, port) => (c.workload.protocol === "HBONE" ? verdictFor(admit(ctx, { listener: "plaintext", node: c.workload.node, srcAddr: q.srcIp }, { srcIdentity: undefined, srcIp: q.srcIp, dstIp: pickIp(c.workload, q.dstIp), dstPort: port })) : undefined));
    notes.push("a service address from outside the mesh goes to one of its endpoints through the node's own routing (kube-proxy); a mesh endpoint takes it in plaintext on its node's 15006");
    return { query, ...serviceVerdict(service, "not captured: through the node's routing to"), source, outbound: { ...outbound, service }, notes };
  }
  const dst = ctx.store.workloadByIp(q.dstIp);
  if (dst?.protocol !== "HBONE") {
    const to = dst ? `${dst.namespace}/${dst.name}, outside the mesh too` : "a destination the mesh does not know";
    return { query, verdict: "allow", summary: `not captured: it goes to ${to}; no agent decides it`, source, outbound, notes };
  }
  const inbound = admission(ctx, { listener: "plaintext", node: dst.node, srcAddr: q.srcIp }, q.srcIp, undefined, q);
  return { query, ...verdictOf(inbound, `not captured: it reaches ${dst.namespace}/${dst.name} in plaintext; ${inboundSummary(inbound)}`), source, outbound, inbound, notes };
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
  // The data path takes the peer's forwarded address only when it is a workload of the identity proved (inbound-source.ts).
  const own = `the agent would weigh the peer's own address (its node's) instead: rules on source IPs are weighed here against ${q.srcIp}, and may decide otherwise`;
  if (srcWl && workloadIdentity(srcWl) !== identity) notes.push(`${q.srcIp} is ${srcWl.namespace}/${srcWl.name}'s, whose identity is ${workloadIdentity(srcWl)}: a peer proving ${identity} could not claim it; ${own}`);
  else if (!srcWl) notes.push(`${q.srcIp} is no workload the mesh knows: a peer could not claim it; ${own}`);
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

/** Carried, refused by a policy, or refused for another reason. */
function verdictOfRefusal(r: { readonly code: string } | undefined): EndpointAdmission["verdict"] {
  return !r ? "allow" : r.code === "AUTHZ_DENIED" ? "deny" : "refused";
}

function verdictOf(inbound: InboundExplained, summary: string): { verdict: Explanation["verdict"]; summary: string } {
  return { verdict: verdictOfRefusal(inbound.refused), summary };
}

function inboundSummary(i: InboundExplained): string {
  if (i.refused) return `refused by node ${i.node || "?"}'s agent: ${i.refused.code}: ${i.refused.message}`;
  const d = i.decision;
  const dry = d && d.dryRun.length > 0 ? `; dry-run ${d.dryRun.join(", ")} would ${(d.dryRunAllow ?? d.allow) ? "allow" : "deny"} it` : "";
  return `allowed by node ${i.node}'s agent (${d?.policy ? `${d.policy}, ` : ""}${d?.reason ?? "no policy"})${dry}`;
}

/** Decides, for an endpoint and the port it is dialled on, what its agent would do (undefined: no agent decides). */
type Judge = (c: EndpointCandidate, port: number) => EndpointAdmission | undefined;

function outboundOf(ctx: ExplainContext, r: Route, q: ExplainQuery, judge: Judge): OutboundExplained {
  return {
    node: ctx.nodeName,
    kind: r.kind,
    ...(r.service ? { service: serviceOf(ctx, r.service, q.dstPort, judge) } : {}),
    ...(r.dst ? { destination: ref(r.dst, r.ip) } : {}),
    target: formatHostPort(r.ip, r.port),
    ...(r.kind === "hbone" ? { hbone: { peer: formatHostPort(r.ip, ctx.hbonePort), expectedIdentities: r.expected } } : {}),
  };
}

function serviceOf(ctx: ExplainContext, s: Service, port: number, judge?: Judge): ServiceExplained {
  const all = endpointCandidates(ctx.store, s, port);
  let total = 0;
  for (const c of all) total += c.weight;
  const verdicts = { allow: 0, deny: 0, refused: 0 };
  const endpoints: EndpointExplained[] = [];
  for (const c of all) {
    const admission = judge && c.port !== undefined && !c.skipped ? (judge(c, c.port) ?? { verdict: "allow" as const, reason: "passthrough" }) : undefined;
    if (admission) verdicts[admission.verdict]++;
    if (endpoints.length >= MAX_ENDPOINTS) continue;
    endpoints.push({
      workload: ref(c.workload, c.workload.workloadIps[0] ?? ""),
      status: c.workload.status,
      ...(c.port !== undefined ? { port: c.port } : {}),
      weight: c.weight,
      chance: total > 0 ? c.weight / total : 0,
      ...(c.skipped ? { skipped: c.skipped } : {}),
      ...(admission ? { admission } : {}),
    });
  }
  return { hostname: s.hostname, port, endpoints, total: all.length, ...(judge ? { verdicts } : {}) };
}

function verdictFor(a: Admission): EndpointAdmission {
  const refusal = a.ok ? undefined : a.refusal;
  const d = a.decision;
  return { verdict: verdictOfRefusal(refusal), ...(d?.policy ? { policy: d.policy } : {}), ...(d ? { reason: d.reason } : {}), ...(refusal ? { code: refusal.code } : {}) };
}

/** One verdict over the endpoints that can be chosen: theirs when they agree, else mixed. */
function serviceVerdict(s: ServiceExplained, lead: string): { verdict: Explanation["verdict"]; summary: string } {
  const v = s.verdicts ?? { allow: 0, deny: 0, refused: 0 };
  const n = v.allow + v.deny + v.refused;
  const at = `${s.hostname} port ${s.port}`;
  if (n === 0) return { verdict: "refused", summary: `${lead} ${at}, which has no endpoint that can take it`.trim() };
  const kinds = (["allow", "deny", "refused"] as const).filter((k) => v[k] > 0);
  if (kinds.length === 1) return { verdict: kinds[0]!, summary: `${lead} ${at}: every endpoint (${n}) would ${kinds[0]}`.trim() };
  return { verdict: "mixed", summary: `${lead} ${at}: of its ${n} endpoints, ${kinds.map((k) => `${v[k]} would ${k}`).join(", ")}`.trim() };
}

function unknownSourceNote(ctx: ExplainContext, w: Workload | undefined): string {
  if (!w) return "the source address is no workload the mesh knows: its traffic is not captured";
  if (w.node !== ctx.nodeName) return `the source runs on node ${w.node || "(none)"}: ask that node's agent (ztunnel explain --admin <its admin address>)`;
  return "the source is not enrolled in the mesh (protocol TCP): its traffic is not captured";
}

function ref(w: Workload, address: string): WorkloadRef {
  return { namespace: w.namespace, name: w.name, node: w.node, protocol: w.protocol, identity: workloadIdentity(w), address };
}
