#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { ZtError } from "@zt/errors";
import { createLogger } from "@zt/ztunnel";
import { controllerEnvHelp, loadControllerConfig } from "./config.js";
import { CONTROLLER_VERSION, startController } from "./controller.js";

function envFooter(): string {
  const vars = controllerEnvHelp();
  const width = Math.max(...vars.map((v) => v.env.length)) + 2;
  return ["", "Environment (an unset or empty variable takes its default):", ...vars.map((v) => `  ${v.env.padEnd(width)}${v.default}`), ""].join("\n");
}

async function run(): Promise<number> {
  let config;
  try {
    config = loadControllerConfig(process.env);
  } catch (err) {
    process.stderr.write(`zt-controller: invalid configuration, not starting:\n${(err as Error).message}\n`);
    return 78;
  }
  const logger = createLogger(config);
  let controller;
  try {
    controller = await startController(config, logger);
  } catch (err) {
    logger.fatal({ code: err instanceof ZtError ? err.code : "START_FAILED" }, `zt-controller could not start: ${(err as Error).message}`);
    process.exit(1);
  }
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await controller.close();
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}

const program = new Command("zt-controller")
  .description(`zt-controller ${CONTROLLER_VERSION}: Istio's CA API and delta xDS for ztunnel agents, from the Kubernetes API`)
  .version(CONTROLLER_VERSION, "-V, --version", "print the version")
  .addHelpText("afterAll", envFooter())
  .exitOverride();
let exitCode = 0;
program.command("run").description("start the controller (configured by the environment below)").action(async () => void (exitCode = await run()));
program.command("version").description("print the version").action(() => void process.stdout.write(`${CONTROLLER_VERSION}\n`));
try {
  await program.parseAsync(process.argv);
  process.exitCode = exitCode;
} catch (err) {
  process.exitCode = err instanceof CommanderError ? err.exitCode : 1;
}
