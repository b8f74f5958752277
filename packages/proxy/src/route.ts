/** The outbound routing decision, from the mesh state alone: no I/O. */
import { randomFillSync } from "node:crypto";
import { formatHostPort, pickEndpoint, workloadIdentity, type Service, type Workload } from "@zt/state";
import type { ProxyContext } from "./context.js";
import { ProxyError } from "./errors.js";

export interface OutboundRequest {
  readonly srcIp: string;
  readonly srcPort: number;
  /** Original destination IP (captured) or the SOCKS5 target. */
  readonly dstIp: string;
  readonly dstPort: number;
}

/** Where a connection goes, decided from the mesh state alone (no I/O). */
export type Route =
  | { kind: "hbone"; src: Workload; dst: Workload; service?: Service | undefined; ip: string; port: number; expected: string[] }
  | { kind: "passthrough"; src: Workload; dst?: Workload | undefined; service?: Service | undefined; ip: string; port: number };

/** What routing reads: the data path's context, or explain's view of it. */
export type RouteContext = Pick<ProxyContext, "store" | "nodeName" | "ownPorts" | "isLocalAddress" | "hbonePort" | "outboundPolicy">;

/** Decide the route or throw the refusal: unknown source, loop, no endpoint, REGISTRY_ONLY. */
export function route(ctx: RouteContext, req: OutboundRequest): Route {
  const src = ctx.store.workloadByIp(req.srcIp);
  if (!src || src.node !== ctx.nodeName || src.protocol !== "HBONE") {
    const why = !src ? "is not a known workload" : src.node !== ctx.nodeName ? `belongs to node ${src.node || "(none)"}, not ${ctx.nodeName}` : "is not enrolled in the mesh (protocol TCP)";
    throw new ProxyError("UNKNOWN_SOURCE", `outbound connection from ${req.srcIp} refused: the source ${why}`);
  }
  if (ctx.ownPorts.has(req.dstPort) && ctx.isLocalAddress(req.dstIp)) {
    throw new ProxyError("LOOP", `connection to ${formatHostPort(req.dstIp, req.dstPort)} is one of the agent's own listeners; refused to avoid a loop`);
  }
  const service = ctx.store.serviceByVip(req.dstIp);
  const target = service ? undefined : ctx.store.workloadByIp(req.dstIp);
  if (target?.protocol === "HBONE" && req.dstPort === ctx.hbonePort) {
    throw new ProxyError("LOOP", `connection to ${formatHostPort(req.dstIp, req.dstPort)}, the HBONE port of a mesh workload, from inside the mesh; refused to avoid a loop`);
  }
  if (service) {
    const ep = pickEndpoint(ctx.store, service, req.dstPort);
    if (!ep) {
      throw new ProxyError("NO_HEALTHY_ENDPOINT", `service ${service.hostname} has no healthy endpoint serving port ${req.dstPort}`);
    }
    const ip = pickIp(ep.workload, req.dstIp);
    if (ep.workload.protocol === "HBONE") {
      return { kind: "hbone", src, dst: ep.workload, service, ip, port: ep.port, expected: [workloadIdentity(ep.workload), ...service.subjectAltNames] };
    }
    return { kind: "passthrough", src, dst: ep.workload, service, ip, port: ep.port };
  }
  const dst = target;
  if (dst) {
    if (dst.protocol === "HBONE") {
      return { kind: "hbone", src, dst, ip: req.dstIp, port: req.dstPort, expected: [workloadIdentity(dst)] };
    }
    return { kind: "passthrough", src, dst, ip: req.dstIp, port: req.dstPort };
  }
  if (ctx.outboundPolicy === "REGISTRY_ONLY") {
    throw new ProxyError("REGISTRY_ONLY", `${formatHostPort(req.dstIp, req.dstPort)} is not a known service or workload and OUTBOUND_TRAFFIC_POLICY is REGISTRY_ONLY`);
  }
  return { kind: "passthrough", src, ip: req.dstIp, port: req.dstPort };
}

/** A hostname target (SOCKS5, explain): the first VIP of the service of that hostname, or the refusal. */
export function hostVip(store: RouteContext["store"], host: string): string | ProxyError {
  const vip = store.serviceByHostname(host)?.vips[0]?.address;
  return vip ?? new ProxyError("SOCKS_UNKNOWN_HOST", `SOCKS5 target host ${host.slice(0, 253)} is not a service hostname known to the mesh`);
}

/** The address of `w` to dial for a destination written as `like`: one of the same family, else its first. */
export function pickIp(w: Workload, like: string): string {
  const v6 = like.includes(":");
  return w.workloadIps.find((ip) => ip.includes(":") === v6) ?? w.workloadIps[0] ?? like;
}

export function baggage(w: Workload): string {
  return `k8s.namespace.name=${w.namespace},k8s.${w.workloadType}.name=${w.workloadName},service.name=${w.canonicalName},service.version=${w.canonicalRevision}`;
}

// A trace context's 24 random bytes come from one pool refilled 4 KiB at a time (170 connections):
// randomBytes() for each connection cost a call into OpenSSL and a Buffer, about 3% of a new
// connection's CPU on the source agent (bench/profile.sh, BENCH_MEASURE=conns).
const TRACE_POOL = Buffer.allocUnsafe(24 * 170);
let tracePoolUsed = TRACE_POOL.length;

export function traceparent(): string {
  if (tracePoolUsed + 24 > TRACE_POOL.length) {
    randomFillSync(TRACE_POOL);
    tracePoolUsed = 0;
  }
  const at = tracePoolUsed;
  tracePoolUsed += 24;
  return `00-${TRACE_POOL.toString("hex", at, at + 16)}-${TRACE_POOL.toString("hex", at + 16, at + 24)}-00`;
}
