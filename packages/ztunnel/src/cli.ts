#!/usr/bin/env node
import { ZtError } from "@zt/state";
import { startAgent, VERSION } from "./agent.js";
import { loadConfig } from "./config.js";
import { createLogger } from "./logging.js";

const USAGE = `ztunnel ${VERSION} — ambient-mode node proxy (HBONE)

usage:
  ztunnel run        start the agent (configured by environment, see the README)
  ztunnel version    print the version
  ztunnel help       this text
`;

async function main(argv: string[]): Promise<number> {
  const cmd = argv[0] ?? "help";
  if (cmd === "version" || cmd === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (cmd !== "run") {
    process.stdout.write(USAGE);
    return cmd === "help" || cmd === "--help" ? 0 : 2;
  }
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ztunnel: unexpected failure: ${String((err as Error)?.stack ?? err)}\n`);
    process.exitCode = 1;
  },
);
