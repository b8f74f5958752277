/**
 * `ztunnel config <view>`: what a running agent believes, read from its admin port's
 * `/config_dump` (127.0.0.1:15000 unless --admin says otherwise), as tables or as JSON/YAML
 * for scripts. Exit 0 with the output, 1 when the agent cannot be asked, 2 on bad usage.
 */
import http from "node:http";
import { stringify } from "yaml";
import { formatTable, viewRows, VIEWS, type ConfigDump, type Row, type View } from "./config-views.js";

export interface ConfigCommandOptions {
  readonly admin: string;
  readonly output: "table" | "json" | "yaml";
  readonly namespace?: string | undefined;
  readonly workloadNode?: string | undefined;
  /** The agent asked must be this node's. */
  readonly node?: string | undefined;
}

export class ConfigCommandError extends Error {}

function fetchDump(admin: string): Promise<ConfigDump> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${admin}/config_dump`, { agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new ConfigCommandError(`the agent's admin port at ${admin} answered ${res.statusCode}: ${body.slice(0, 200)}`));
        try {
          resolve(JSON.parse(body) as ConfigDump);
        } catch {
          reject(new ConfigCommandError(`the agent's admin port at ${admin} answered something that is not a config dump`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("no answer in 5 s")));
    req.on("error", (err: NodeJS.ErrnoException) =>
      reject(new ConfigCommandError(`cannot reach the agent's admin port at ${admin} (${err.code ?? err.message}); is the agent running there? --admin host:port points elsewhere`)),
    );
  });
}

export async function runConfigCommand(view: View | "all", o: ConfigCommandOptions): Promise<string> {
  const dump = await fetchDump(o.admin);
  if (o.node !== undefined && dump.config.nodeName !== o.node) {
    throw new ConfigCommandError(`the agent at ${o.admin} serves node ${JSON.stringify(dump.config.nodeName)}, not ${JSON.stringify(o.node)}`);
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
