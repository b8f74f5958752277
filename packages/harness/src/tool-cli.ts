#!/usr/bin/env node
import net from "node:net";
import { httpGet } from "./agent-process.js";
import { echoFlow } from "./flows.js";

/**
 * Small probes run inside another network namespace (`ip netns exec <ns> node tool-cli.js ...`),
 * printing one JSON line: `flow <socksHost> <socksPort> <srcIp> <host> <port> [bytes]`, `get <addr> <path>`;
 * and `forward <ip> <port> <unix socket>`: relay TCP connections made in that namespace to a
 * unix socket (a path is the same in every namespace): "listening" once up, then until killed.
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
  if (cmd === "forward") {
    const [ip, port, socket] = a;
    const server = net.createServer((c) => {
      const u = net.connect(socket!);
      c.on("error", () => u.destroy());
      u.on("error", () => c.destroy());
      c.pipe(u).pipe(c);
    });
    await new Promise<void>((resolve) => server.listen(Number(port), ip, () => resolve()));
    process.stdout.write(`${JSON.stringify({ listening: `${ip}:${port}` })}\n`);
    await new Promise<never>(() => undefined);
  }
  throw new Error(`unknown command ${String(cmd)}`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exitCode = 1;
});
