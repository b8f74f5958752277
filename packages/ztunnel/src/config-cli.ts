/**
 * `ztunnel config <view>`: what a running agent believes, read from its admin port's
 * `/config_dump` (127.0.0.1:15000 unless --admin says otherwise), as tables or as JSON/YAML
 * for scripts; `connections` reads its live connections from `/debug/connections`.
 * Exit 0 with the output, 1 when the agent cannot be asked, 2 on bad usage.
 */
import { stringify } from "yaml";
import { adminGetJson, AdminQueryError } from "./admin-client.js";
import { connectionRows, formatTable, viewRows, VIEWS, type ConfigDump, type ConnectionListing, type Row, type View } from "./config-views.js";

export interface ConfigCommandOptions {
  readonly admin: string;
  readonly output: "table" | "json" | "yaml";
  readonly namespace?: string | undefined;
  readonly workloadNode?: string | undefined;
  /** The agent asked must be this node's. */
  readonly node?: string | undefined;
  /** connections only: inbound or outbound. */
  readonly direction?: "inbound" | "outbound" | undefined;
  /** connections only: at most this many (the agent's default otherwise). */
  readonly limit?: number | undefined;
}

/** Options that do not go together: exit 2, like the parser's own usage errors. */
export class ConfigUsageError extends Error {}

function checkNode(o: ConfigCommandOptions, node: string): void {
  if (o.node !== undefined && node !== o.node) {
    throw new AdminQueryError(`the agent at ${o.admin} serves node ${JSON.stringify(node)}, not ${JSON.stringify(o.node)}`);
  }
}

/** The output; `warn` gets what goes to stderr, such as a listing cut at its limit. */
export async function runConfigCommand(view: View | "connections" | "all", o: ConfigCommandOptions, warn: (line: string) => void = () => {}): Promise<string> {
  if (view === "connections") return connections(o, warn);
  for (const [opt, set] of [["--direction", o.direction], ["--limit", o.limit]] as const) {
    if (set !== undefined) throw new ConfigUsageError(`${opt} applies to the connections view only`);
  }
  const dump = await adminGetJson<ConfigDump>(o.admin, "/config_dump", "a config dump");
  checkNode(o, dump.config.nodeName);
  const filters = { namespace: o.namespace, workloadNode: o.workloadNode };
  const views: View[] = view === "all" ? [...VIEWS] : [view];
  const rows = Object.fromEntries(views.map((v) => [v, viewRows(v, dump, filters)])) as Record<View, Row[]>;
  const data = view === "all" ? rows : rows[view];
  if (o.output === "json") return `${JSON.stringify(data, null, 2)}\n`;
  if (o.output === "yaml") return stringify(data);
  if (view !== "all") return formatTable(rows[view]);
  return views.map((v) => `${v.toUpperCase()}\n${formatTable(rows[v])}`).join("\n");
}

/** `/debug/connections`, filtered by the agent (namespace of either side, direction). */
async function connections(o: ConfigCommandOptions, warn: (line: string) => void): Promise<string> {
  if (o.workloadNode !== undefined) throw new ConfigUsageError("--workload-node does not apply to connections: an agent holds only its own node's (use --node to check which node that is)");
  const q = new URLSearchParams();
  if (o.namespace !== undefined) q.set("namespace", o.namespace);
  if (o.direction !== undefined) q.set("direction", o.direction);
  if (o.limit !== undefined) q.set("limit", String(o.limit));
  const path = `/debug/connections${q.size > 0 ? `?${q}` : ""}`;
  const listing = await adminGetJson<ConnectionListing>(o.admin, path, "a connection listing");
  if (!Array.isArray(listing.connections)) throw new AdminQueryError(`the agent's admin port at ${o.admin} answered something that is not a connection listing`);
  checkNode(o, listing.node);
  if (listing.truncated) warn(`only the first ${listing.count} connections are shown (the agent holds ${listing.held} in all); raise --limit to see more`);
  if (listing.unanswered.length > 0) warn(`data-path worker(s) ${listing.unanswered.join(", ")} did not answer: their connections are missing`);
  if (o.output === "json") return `${JSON.stringify(listing.connections, null, 2)}\n`;
  if (o.output === "yaml") return stringify(listing.connections);
  return formatTable(connectionRows(listing.connections));
}
