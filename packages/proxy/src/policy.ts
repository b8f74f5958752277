import { authorize, type AuthzConnection, type AuthzDecision, type Workload } from "@zt/state";
import type { ProxyContext } from "./context.js";

/** The L4 decision for a connection to `dst`. Fails closed: a policy evaluation that throws denies. */
export function decide(ctx: Pick<ProxyContext, "store" | "onFault">, dst: Workload, conn: AuthzConnection): AuthzDecision {
  try {
    return authorize(ctx.store.policiesFor(dst), conn);
  } catch (err) {
    ctx.onFault("authorization", err);
    return { allow: false, reason: "denied-on-error", dryRun: [] };
  }
}
