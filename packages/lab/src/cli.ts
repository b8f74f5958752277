#!/usr/bin/env node
import { parseArgs } from "node:util";
import { cleanNamespaces } from "./clean.js";
import { createLab } from "./create-lab.js";
import { simpleLabSpec, type PodMode } from "./plan.js";

const USAGE = `usage:
  zt-lab up [--nodes N] [--pods M] [--mode host-ips|pod-ns] [--prefix zt-<pid>-x]
      build the lab, print its topology as JSON, keep it until SIGINT/SIGTERM, then tear it down
  zt-lab clean [--all]
      delete leftover zt-<pid>-* namespaces whose pid is gone (every zt-* namespace with --all)
`;

function count(text: string | undefined, fallback: number, what: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${what} wants a positive integer, got ${text}`);
  return n;
}

async function up(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { nodes: { type: "string" }, pods: { type: "string" }, mode: { type: "string" }, prefix: { type: "string" } },
  });
  const mode = values.mode ?? "host-ips";
  if (mode !== "host-ips" && mode !== "pod-ns") throw new Error(`--mode must be host-ips or pod-ns, got ${mode}`);
  const spec = simpleLabSpec({ nodes: count(values.nodes, 2, "nodes"), pods: count(values.pods, 2, "pods"), podMode: mode satisfies PodMode });
  if (values.prefix !== undefined) spec.prefix = values.prefix;
  // Listen before building, so a signal during the build still leads to a clean teardown.
  const stop = new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  const lab = await createLab(spec);
  const { prefix, fabricNs, chain, nodes, pods, services, namespaces } = lab;
  process.stdout.write(`${JSON.stringify({ prefix, mode, fabricNs, chain, nodes, pods, services, namespaces }, null, 2)}\n`);
  process.stderr.write(`zt-lab: ${prefix} is up; SIGINT/SIGTERM tears it down\n`);
  const keepAlive = setInterval(() => undefined, 1 << 30); // signal listeners alone do not keep node running
  await stop;
  clearInterval(keepAlive);
  await lab.destroy();
  process.stderr.write(`zt-lab: ${prefix} torn down\n`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "up") {
    await up(rest);
    return 0;
  }
  if (cmd === "clean") {
    const { values } = parseArgs({ args: rest, options: { all: { type: "boolean" } } });
    const removed = await cleanNamespaces({ all: values.all === true });
    for (const ns of removed) process.stdout.write(`removed ${ns}\n`);
    process.stdout.write(`zt-lab clean: removed ${String(removed.length)} namespace(s)\n`);
    return 0;
  }
  process.stderr.write(USAGE);
  return cmd === "help" || cmd === "--help" || cmd === "-h" ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`zt-lab: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
