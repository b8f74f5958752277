import type { AgentProcess } from "./agent-process.js";
import type { FlowResult } from "./flows.js";

export interface SummaryRow {
  readonly what: string;
  readonly result: FlowResult;
  readonly expectOk: boolean;
  /** The source address the destination pod itself saw (captured flows). */
  readonly seenByDestination?: string | undefined;
  /** What the source's agent's /debug/explain says of the flow (asked for the refused ones). */
  readonly explained?: string | undefined;
}

/** The source agent's one-line explanation of a flow (`ztunnel explain`), or why it could not be had. */
export async function explainFlow(agent: AgentProcess, src: string, host: string, port: number): Promise<string> {
  const dst = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const r = await agent.get("admin", `/debug/explain?${new URLSearchParams({ src, dst })}`).catch((e: Error) => ({ status: 0, body: e.message }));
  if (r.status !== 200) return `(${agent.node}'s admin answered ${r.status}: ${r.body.trim().slice(0, 200)})`;
  const e = JSON.parse(r.body) as { verdict: string; summary: string };
  return `${e.verdict}: ${e.summary}`;
}

/** Print one line per flow with the identity the destination's agent saw; returns the exit code. */
export function printSummary(rows: readonly SummaryRow[], agents: readonly AgentProcess[], where?: (a: AgentProcess) => string): number {
  let bad = 0;
  const out: string[] = [];
  for (const row of rows) {
    const { result } = row;
    const seen = identitySeen(agents, result.srcAddr);
    const asExpected = result.ok === row.expectOk;
    if (!asExpected) bad++;
    const status = result.ok ? `ok, ${result.bytes} bytes echoed ${result.detail}` : result.detail;
    const pod = row.seenByDestination ? `\n    destination pod saw source ${row.seenByDestination}` : "";
    const why = row.explained ? `\n    explain: ${row.explained}` : "";
    out.push(`${asExpected ? "✔" : "✘"} ${row.what}\n    ${status}${pod}${seen ? `\n    destination agent saw ${seen}` : ""}${why}`);
  }
  process.stdout.write(`${out.join("\n")}\n\n`);
  for (const a of agents) {
    const n = a.accessLogs().length;
    process.stdout.write(`agent ${a.node}: ${n} access-log lines, admin http://${a.env["ADMIN_ADDR"]}/config_dump${where ? ` (${where(a)})` : ""}\n`);
  }
  process.stdout.write(bad === 0 ? "\nmesh works: every flow behaved as expected\n" : `\n${bad} flow(s) did not behave as expected\n`);
  return bad === 0 ? 0 : 1;
}

function identitySeen(agents: readonly AgentProcess[], srcAddr: string): string | undefined {
  if (!srcAddr) return undefined;
  for (const a of agents) {
    for (const l of a.accessLogs()) {
      if (l["direction"] === "inbound" && l["src.addr"] === srcAddr) {
        const who = typeof l["src.identity"] === "string" ? l["src.identity"] : "no identity (plaintext from outside the mesh)";
        return `${who} (on ${a.node}, to ${String(l["dst.workload"])})`;
      }
    }
  }
  return undefined;
}
