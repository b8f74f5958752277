/**
 * `ztunnel explain`: a running agent's `/debug/explain` for one connection, as text for a
 * person or JSON/YAML for scripts. Exit 0 with the answer (whatever the verdict), 1 when the
 * agent cannot be asked or refuses the question, 2 on bad usage.
 */
import type { Explanation } from "@zt/proxy";
import { stringify } from "yaml";
import { adminGetJson } from "./admin-client.js";
import { formatTable } from "./config-views.js";

export interface ExplainCommandOptions {
  readonly src: string;
  readonly dst: string;
  readonly identity?: string | undefined;
  readonly admin: string;
  readonly output: "text" | "json" | "yaml";
}

export async function runExplainCommand(o: ExplainCommandOptions): Promise<string> {
  const q = new URLSearchParams({ src: o.src, dst: o.dst, ...(o.identity !== undefined ? { identity: o.identity } : {}) });
  const e = await adminGetJson<Explanation>(o.admin, `/debug/explain?${q}`, "an explanation");
  if (o.output === "json") return `${JSON.stringify(e, null, 2)}\n`;
  if (o.output === "yaml") return stringify(e);
  return explanationText(e);
}

/** The explanation for a person: verdict, route, admission with each policy, notes. */
export function explanationText(e: Explanation): string {
  const out: string[] = [`${e.verdict.toUpperCase()}: ${e.summary}`, ""];
  const s = e.source;
  out.push(`source       ${e.query.src}${s ? `  ${s.namespace}/${s.name} on node ${s.node || "-"}, ${s.protocol}, ${s.identity}` : "  (no workload the mesh knows)"}`);
  const ob = e.outbound;
  if (ob) {
    out.push(`outbound     on node ${ob.node}: ${ob.kind}${ob.target ? ` to ${ob.target}` : ""}${ob.refused ? ` (${ob.refused.code}: ${ob.refused.message})` : ""}`);
    if (ob.service) {
      out.push(`  service    ${ob.service.hostname} port ${ob.service.port}; the endpoint is chosen per connection${ob.kind === "not-captured" ? " (by the node's own routing)" : ""}:`);
      const rows = ob.service.endpoints.map((p) => ({
        endpoint: `${p.workload.namespace}/${p.workload.name}`,
        node: p.workload.node,
        status: p.status,
        port: p.port ?? null,
        weight: p.weight,
        chance: p.skipped ? `skipped (${p.skipped})` : `${Math.round(p.chance * 1000) / 10}%`,
        verdict: p.admission ? `${p.admission.verdict}${p.admission.policy ? ` (${p.admission.policy})` : p.admission.code ? ` (${p.admission.code})` : ""}` : null,
      }));
      out.push(indent(formatTable(rows)));
      if (ob.service.total > ob.service.endpoints.length) out.push(`    … ${ob.service.total - ob.service.endpoints.length} more endpoints (counted in the verdicts)`);
    }
    if (ob.destination) out.push(`  dialled    ${ob.destination.namespace}/${ob.destination.name} (${ob.destination.protocol}) at ${ob.target ?? "-"}`);
    if (ob.hbone) out.push(`  hbone      peer ${ob.hbone.peer}, expecting ${ob.hbone.expectedIdentities.join(" or ")}`);
  }
  const ib = e.inbound;
  if (ib) {
    const d = ib.destination;
    out.push(`inbound      on node ${ib.node || "-"} (${ib.listener}): from ${ib.source.identity ?? "no identity (plaintext)"} at ${ib.source.address}${d ? ` to ${d.namespace}/${d.name}` : ""}`);
    if (ib.policies.length > 0) {
      const rows = ib.policies.map((p) => ({ policy: p.policy, action: p.action, dryRun: p.dryRun ? "yes" : "no", matched: p.missing ? "no (not delivered: matches nothing)" : p.rule >= 0 ? `rule ${p.rule}` : "no" }));
      out.push(indent(formatTable(rows)));
    } else if (!ib.refused || ib.decision) out.push("  no policy applies");
    const dec = ib.decision;
    if (dec) {
      const dry = dec.dryRun.length > 0 ? `; dry-run ${dec.dryRun.join(", ")}: would ${(dec.dryRunAllow ?? dec.allow) ? "allow" : "deny"}` : "";
      out.push(`  decision   ${dec.allow ? "allow" : "deny"} (${dec.reason}${dec.policy ? `, ${dec.policy}` : ""})${dry}`);
    }
    if (ib.refused) out.push(`  refused    ${ib.refused.code}: ${ib.refused.message}`);
  }
  if (e.notes.length > 0) out.push("notes", ...e.notes.map((n) => `  - ${n}`));
  return `${out.join("\n")}\n`;
}

function indent(table: string): string {
  return table
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}
