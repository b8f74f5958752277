#!/usr/bin/env node
import { runLoopbackDemo } from "./demo-loopback.js";

/** `npm run demo`: a working mesh on the embedded defaults, with a summary of what crossed it. */
async function main(): Promise<number> {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (root && process.env["ZT_DEMO"] !== "loopback") {
    const { runNetnsDemo } = await import("./demo-netns.js");
    return runNetnsDemo();
  }
  if (!root) process.stdout.write("not root: running the loopback variant (two agents on 127.0.1.1 and 127.0.2.1)\n\n");
  return runLoopbackDemo();
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
