/**
 * `ztunnel config <view>`: what a running agent believes, read from its admin port's
 * `/config_dump` (127.0.0.1:15000 unless --admin says otherwise), as tables or as JSON/YAML
 * for scripts. Exit 0 with the output, 1 when the agent cannot be asked, 2 on bad usage.
 */
import { stringify } from "yaml";
import { adminGetJson, AdminQueryError } from "./admin-client.js";
import { formatTable, viewRows, VIEWS, type ConfigDump, type Row, type View } from "./config-views.js";

export interface ConfigCommandOptions {
  readonly admin: string;
  readonly output: "table" | "json" | "yaml";
  readonly namespace?: string | undefined;
  readonly workloadNode?: string | undefined;
  /** The agent asked must be this node's. */
  readonly node?: string | undefined;
}

export async function runConfigCommand(view: View | "all", o: ConfigCommandOptions): Promise<string> {
  const dump = await adminGetJson<ConfigDump>(o.admin, "/config_dump", "a config dump");
  if (o.node !== undefined && dump.config.nodeName !== o.node) {
    throw new AdminQueryError(`the agent at ${o.admin} serves node ${JSON.stringify(dump.config.nodeName)}, not ${JSON.stringify(o.node)}`);
  }
  const filters = { namespace: o.namespace, workloadNode: o.workloadNode };
  const views: View[] = view === "all" ? [...VIEWS] : [view];
  const rows = Object.fromEntries(views.map((v) => [v, viewRows(v, dump, filters)])) as Record<View, Row[]>;
  const data = view === "all" ? rows : rows[view];
  if (o.output === "json") return `${JSON.stringify(data, null, 2)}\n`;
  if (o.output === "yaml") return stringify(data);
  if (view !== "all") return formatTable(rows[view]);
  return views.map((v) => `${v.toUpperCase()}\n${formatTable(rows[v])}`).join("\n");
}
