import { runLoopbackDemo } from "./demo-loopback.js";

/** Emulated nodes in network namespaces: filled in once the lab package lands; loopback meanwhile. */
export async function runNetnsDemo(): Promise<number> {
  process.stdout.write("network-namespace variant not built yet: running the loopback variant\n\n");
  return runLoopbackDemo();
}
