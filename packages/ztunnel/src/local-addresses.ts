import os from "node:os";
import { normalizeIp } from "@zt/state";

/**
 * This host's addresses, for loop protection. Read once and refreshed every 30 s by one
 * unref'ed timer: cheap on the data path, which only asks when the port is one of ours.
 * A failed refresh keeps the previous set.
 */
export function createLocalAddresses(onFault: (where: string, err: unknown) => void, refreshMs = 30_000): { has: (ip: string) => boolean; close(): void } {
  let set = read();
  const timer = setInterval(() => {
    // os.networkInterfaces() throws when the process is out of descriptors (EMFILE): keep the last set.
    try {
      set = read();
    } catch (err) {
      onFault("local address refresh", err);
    }
  }, refreshMs);
  timer.unref();
  return {
    has: (ip) => ip === "0.0.0.0" || ip === "::" || ip.startsWith("127.") || set.has(ip),
    close: () => clearInterval(timer),
  };
}

function read(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      const ip = normalizeIp(a.address);
      if (ip) out.add(ip);
    }
  }
  return out;
}
