/** 15006: plaintext inbound capture from clients outside the mesh → local workload → policy → dial → splice. */
import type net from "node:net";
import { formatHostPort, normalizeIp } from "@zt/state";
import { fail, fillDst, newRecord, run } from "./connection.js";
import type { ProxyContext } from "./context.js";
import { dialTcp } from "./dial.js";
import { admit, noteDryRun } from "./policy.js";
import { toProxyError } from "./errors.js";
import { createProxyListener, lastResort } from "./listener.js";

/** 15006: plaintext inbound capture from clients outside the mesh; no identity, policy still applies. */
export function createPlaintextInboundServer(ctx: ProxyContext): net.Server {
  return createProxyListener(ctx, "plaintext", (client) => {
    proxyPlaintextInbound(ctx, client).catch((err: unknown) => lastResort(ctx, client, "plaintext inbound connection", err));
  });
}

async function proxyPlaintextInbound(ctx: ProxyContext, client: net.Socket): Promise<void> {
  client.on("error", ignore);
  const dstIp = normalizeIp(client.localAddress ?? "") ?? "";
  const dstPort = client.localPort ?? 0;
  const srcIp = normalizeIp(client.remoteAddress ?? "") ?? "";
  const rec = newRecord(formatHostPort(srcIp, client.remotePort ?? 0), formatHostPort(dstIp, dstPort), "inbound", "plaintext");
  ctx.connecting.add(rec);
  try {
    const conn = { srcIdentity: undefined, srcIp, dstIp, dstPort };
    const a = admit(ctx, { listener: "plaintext", node: ctx.nodeName, srcAddr: srcIp }, conn);
    if (a.dst) fillDst(rec, a.dst);
    if (a.decision) noteDryRun(rec, a.decision);
    if (!a.ok) throw a.refusal;
    const dst = a.dst;
    const upstream = await dialTcp(ctx, dstIp, dstPort, { srcIp });
    // Not removeAllListeners: it would make the socket's listener table a dictionary for its life.
    client.removeListener("error", ignore);
    run(ctx, rec, upstream, client, "sent-is-upstream-written", { dst, conn });
  } catch (e) {
    client.resetAndDestroy();
    fail(ctx, rec, toProxyError(e));
  } finally {
    // Listed as connecting until relayed (run() puts it in the live set) or refused.
    ctx.connecting.delete(rec);
  }
}

function ignore(): void {}
