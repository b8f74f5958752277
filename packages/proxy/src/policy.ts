import { authorize, type AuthzConnection, type AuthzDecision, type PolicyTrace, type Workload } from "@zt/state";
import type { ProxyContext } from "./context.js";
import { ProxyError } from "./errors.js";
import type { ConnectionRecord } from "./types.js";

/** What the dry-run policies would have decided, on the connection's record (nothing when none applied). */
export function noteDryRun(rec: ConnectionRecord, d: AuthzDecision): void {
  if (d.dryRun.length === 0) return;
  rec.dryRun = { policies: d.dryRun.join(","), decision: (d.dryRunAllow ?? d.allow) ? "allow" : "deny" };
}

/** The L4 decision for a connection to `dst`. Fails closed: a policy evaluation that throws denies. */
export function decide(ctx: Pick<ProxyContext, "store" | "onFault">, dst: Workload, conn: AuthzConnection, trace?: PolicyTrace[]): AuthzDecision {
  try {
    return authorize(ctx.store.policiesFor(dst), conn, trace);
  } catch (err) {
    ctx.onFault("authorization", err);
    return { allow: false, reason: "denied-on-error", dryRun: [] };
  }
}

/** What inbound admission needs: the data path's context, or explain's view of it. */
export type AdmitContext = Pick<ProxyContext, "store" | "onFault" | "ownPorts">;

/** How a connection arrives at the destination's agent. */
export interface Arrival {
  /** 15008 (mTLS from a mesh peer) or 15006 (plaintext from outside the mesh). */
  readonly listener: "hbone" | "plaintext";
  /** The node whose agent admits it. */
  readonly node: string;
  /** For the refusal's message: the peer's verified identity (HBONE) and the source address. */
  readonly identity?: string | undefined;
  readonly srcAddr: string;
}

/**
 * The destination's agent letting a connection in, or not: the destination must be a workload
 * of its node, not one of the agent's own ports, and the policies must allow it. `dst` is set
 * once the workload is found, `decision` once the policies were weighed. The HBONE and
 * plaintext listeners and explain all decide here.
 */
export type Admission =
  | { readonly ok: true; readonly dst: Workload; readonly decision: AuthzDecision }
  | { readonly ok: false; readonly refusal: ProxyError; readonly dst?: Workload; readonly decision?: AuthzDecision };

export function admit(ctx: AdmitContext, how: Arrival, conn: AuthzConnection, trace?: PolicyTrace[]): Admission {
  const hbone = how.listener === "hbone";
  const dst = ctx.store.workloadByIp(conn.dstIp);
  if (!dst || dst.node !== how.node) {
    return {
      ok: false,
      refusal: hbone
        ? new ProxyError("HBONE_NOT_LOCAL", `HBONE CONNECT to ${conn.dstIp}, which is not a workload of node ${how.node}; this agent relays to nothing else`)
        : new ProxyError("PLAINTEXT_NOT_LOCAL", `plaintext connection to ${conn.dstIp}, which is not a workload of node ${how.node}`),
    };
  }
  if (ctx.ownPorts.has(conn.dstPort)) {
    const refusal = hbone
      ? new ProxyError("HBONE_LOOP", `HBONE CONNECT to port ${conn.dstPort}, one of the agent's own ports`)
      : new ProxyError("LOOP", `plaintext connection to port ${conn.dstPort}, one of the agent's own ports`);
    return { ok: false, refusal, dst };
  }
  const decision = decide(ctx, dst, conn, trace);
  if (decision.allow) return { ok: true, dst, decision };
  const from = hbone ? `connection from ${how.identity ?? "unknown"} (${how.srcAddr})` : `plaintext connection from ${how.srcAddr}`;
  const refusal = new ProxyError("AUTHZ_DENIED", `${from} to ${dst.namespace}/${dst.name}:${conn.dstPort} denied by ${decision.policy ?? "policy"} (${decision.reason})`);
  return { ok: false, refusal, dst, decision };
}
