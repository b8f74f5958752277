#!/usr/bin/env node
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { ZtError } from "@zt/errors";
import { startAgent, VERSION } from "./agent.js";
import { envHelp, loadConfig } from "./config.js";
import { createLogger } from "./logging.js";
import { AdminQueryError } from "./admin-client.js";
import { CONNECTIONS_MAX_LIMIT } from "./admin-connections.js";
import { ConfigUsageError, runConfigCommand, type ConfigCommandOptions } from "./config-cli.js";
import { runExplainCommand, type ExplainCommandOptions } from "./explain-cli.js";
import { VIEWS, type View } from "./config-views.js";

/** What each listener variable's port is for (variables not listed here still show under Environment). */
const PORTS: Readonly<Record<string, string>> = {
  OUTBOUND_ADDR: "outbound capture (TPROXY delivers pods' connections here)",
  INBOUND_PLAINTEXT_ADDR: "inbound plaintext capture (clients outside the mesh)",
  INBOUND_ADDR: 'inbound HBONE (mTLS + HTTP/2 CONNECT); "workloads:<port>" = one listener per local workload IP',
  SOCKS5_ADDR: "SOCKS5, the outbound path without capture",
  ADMIN_ADDR: "admin: /config_dump, /debug/connections, /debug/status, /debug/explain, /logging, POST /quitquitquit, / (live page)",
  STATS_ADDR: "metrics: /metrics, /stats/prometheus",
  READINESS_ADDR: "readiness: /healthz/ready",
};

/** The Environment and Ports sections, generated from config.ts's table so they cannot drift. */
function helpFooter(): string {
  const vars = envHelp();
  const width = Math.max(...vars.map((v) => v.env.length)) + 2;
  const lines = ["", "Environment (an unset or empty variable takes its default):"];
  for (const v of vars) lines.push(`  ${v.env.padEnd(width)}${v.default}${v.values ? `  (one of: ${v.values.join(", ")})` : ""}`);
  lines.push("", "Ports (default address, the variable that moves it):");
  for (const v of vars.filter((x) => x.env.endsWith("_ADDR"))) {
    lines.push(`  ${v.default.padEnd(22)}${v.env.padEnd(width)}${PORTS[v.env] ?? ""}`);
  }
  lines.push("", "Run the bin itself (node packages/ztunnel/dist/cli.js run) under a supervisor: it drains on SIGTERM/SIGINT.", "");
  return lines.join("\n");
}

/** A subcommand's help names its siblings too. */
function commandList(root: Command): string {
  const lines = ["", `Commands of ${root.name()}:`];
  for (const c of root.commands) lines.push(`  ${c.name().padEnd(10)}${c.description()}`);
  lines.push(`  ${"help".padEnd(10)}display help for a command`, "");
  return lines.join("\n");
}

async function run(): Promise<number> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    process.stderr.write(`ztunnel: invalid configuration, not starting:\n${(err as Error).message}\n`);
    return 78;
  }
  const logger = createLogger(config);
  let agent;
  try {
    agent = await startAgent(config, logger);
  } catch (err) {
    const code = err instanceof ZtError ? err.code : "START_FAILED";
    logger.fatal({ code }, `ztunnel could not start: ${(err as Error).message}`);
    // Half-started pieces (timers, watchers) must not keep a failed agent alive.
    process.exit(1);
  }
  const stop = (signal: string): void => void agent.shutdown(signal);
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  await agent.closed;
  // Everything is closed; do not let a stray handle keep a stopped agent alive.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}

function program(setExit: (code: number) => void): Command {
  const p = new Command("ztunnel")
    .description(`ztunnel ${VERSION}: ambient-mode node proxy (HBONE), configured by the environment`)
    .version(VERSION, "-V, --version", "print the version")
    .addHelpText("afterAll", ({ command }) => `${command.parent ? commandList(command.parent) : ""}${helpFooter()}`)
    .showHelpAfterError("(ztunnel --help lists the commands, the environment and the ports)")
    .exitOverride();
  p.command("run")
    .description("start the agent (configured by the environment below)")
    .action(async () => setExit(await run()));
  p.command("config")
    .description("what a running agent believes (like istioctl ztunnel-config): workloads, services, policies, certificates, all of those, or its live connections")
    .addArgument(new Argument("<view>", "what to show").choices([...VIEWS, "all", "connections"]))
    .option("--admin <host:port>", "the agent's admin address", "127.0.0.1:15000")
    .addOption(new Option("-o, --output <format>", "table, or json / yaml for scripts").choices(["table", "json", "yaml"]).default("table"))
    .option("--namespace <namespace>", "only this namespace's")
    .option("--workload-node <node>", "only the workloads on this node (and the services' endpoints there)")
    .option("--node <node>", "refuse unless the agent asked is this node's")
    .addOption(new Option("--direction <direction>", "connections only: inbound or outbound").choices(["inbound", "outbound"]))
    .option("--limit <n>", `connections only: at most this many (1 to ${CONNECTIONS_MAX_LIMIT}; default the agent's, 10000)`, limitOption)
    .action(async (view: View | "all" | "connections", o: ConfigCommandOptions) => {
      try {
        process.stdout.write(await runConfigCommand(view, o, (line) => process.stderr.write(`ztunnel config: ${line}\n`)));
        setExit(0);
      } catch (err) {
        if (!(err instanceof AdminQueryError) && !(err instanceof ConfigUsageError)) throw err;
        process.stderr.write(`ztunnel config: ${err.message}\n`);
        setExit(err instanceof ConfigUsageError ? 2 : 1);
      }
    });
  p.command("explain")
    .description("why a running agent would allow, deny or route a connection, without sending it (GET /debug/explain)")
    .requiredOption("--src <ip>", "the source address (a pod IP)")
    .requiredOption("--dst <ip:port>", "the destination: a service VIP, pod IP ([ipv6]:port) or service hostname, with the port")
    .option("--identity <spiffe id>", "explain only the destination side, for a peer proving this identity from --src")
    .option("--admin <host:port>", "the agent's admin address (the source node's, to explain its route)", "127.0.0.1:15000")
    .addOption(new Option("-o, --output <format>", "text, or json / yaml for scripts").choices(["text", "json", "yaml"]).default("text"))
    .action(async (o: ExplainCommandOptions) => {
      try {
        process.stdout.write(await runExplainCommand(o));
        setExit(0);
      } catch (err) {
        if (!(err instanceof AdminQueryError)) throw err;
        process.stderr.write(`ztunnel explain: ${err.message}\n`);
        setExit(1);
      }
    });
  p.command("version")
    .description("print the version")
    .action(() => {
      process.stdout.write(`${VERSION}\n`);
      setExit(0);
    });
  return p;
}

function limitOption(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > CONNECTIONS_MAX_LIMIT) throw new InvalidArgumentError(`expected a whole number from 1 to ${CONNECTIONS_MAX_LIMIT}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  let code = 0;
  const p = program((c) => (code = c));
  if (argv.length === 0) {
    p.outputHelp();
    return 0;
  }
  try {
    await p.parseAsync(argv, { from: "user" });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    // Help and version exit 0; a usage error (already printed, with a hint) exits 2.
    return err.exitCode === 0 ? 0 : 2;
  }
  return code;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ztunnel: unexpected failure: ${String((err as Error)?.stack ?? err)}\n`);
    process.exitCode = 1;
  },
);
