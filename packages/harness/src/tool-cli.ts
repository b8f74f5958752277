#!/usr/bin/env node
import { httpGet } from "./agent-process.js";
import { echoFlow } from "./flows.js";

/**
 * Small probes run inside another network namespace (`ip netns exec <ns> node tool-cli.js ...`),
 * printing one JSON line: `flow <socksHost> <socksPort> <srcIp> <host> <port> [bytes]`, `get <addr> <path>`.
 */
async function main(argv: string[]): Promise<void> {
  const [cmd, ...a] = argv;
  if (cmd === "flow") {
    const [sh, sp, src, host, port, bytes] = a;
    const r = await echoFlow({ host: sh!, port: Number(sp) }, src!, host!, Number(port), bytes ? Number(bytes) : undefined);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  if (cmd === "get") {
    const r = await httpGet(a[0]!, a[1]!).catch((e: Error) => ({ status: 0, body: e.message }));
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  throw new Error(`unknown command ${String(cmd)}`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exitCode = 1;
});
