import { authorize, type AuthzConnection, type AuthzDecision, type Workload } from "@zt/state";
import type { ProxyContext } from "./context.js";
import type { ConnectionRecord } from "./types.js";

/** What the dry-run policies would have decided, on the connection's record (nothing when none applied). */
export function noteDryRun(rec: ConnectionRecord, d: AuthzDecision): void {
  if (d.dryRun.length === 0) return;
  rec.dryRun = { policies: d.dryRun.join(","), decision: (d.dryRunAllow ?? d.allow) ? "allow" : "deny" };
}

/** The L4 decision for a connection to `dst`. Fails closed: a policy evaluation that throws denies. */
export function decide(ctx: Pick<ProxyContext, "store" | "onFault">, dst: Workload, conn: AuthzConnection): AuthzDecision {
  try {
    return authorize(ctx.store.policiesFor(dst), conn);
  } catch (err) {
    ctx.onFault("authorization", err);
    return { allow: false, reason: "denied-on-error", dryRun: [] };
  }
}
