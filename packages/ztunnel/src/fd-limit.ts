import { readFileSync } from "node:fs";
import { createFdBudget, type FdBudget } from "@zt/proxy";

/** What the process may open, and how much of it the data path gets. */
export interface FdPlan {
  /** The soft RLIMIT_NOFILE, or undefined when it cannot be read (not Linux). */
  readonly limit: number | undefined;
  /** Kept for everything but proxied connections: control ports, certificates, files, logs, the runtime. */
  readonly reserve: number;
  readonly budget: FdBudget;
}

/** Descriptors kept out of the data path's reach: at least this many, or a tenth of the limit. */
const MIN_RESERVE = 256;
/** Without a readable limit: assume the common default soft limit. */
const UNKNOWN_LIMIT = 1024;

/**
 * The data path's descriptor budget, from the process's open-files limit (read once, at
 * start, from /proc/self/limits). Each listener may hold a share of it — no flood of one
 * kind (plaintext clients on 15006, handshakes on 15008) can take what the others need —
 * and the data path as a whole at most the limit minus the reserve.
 */
export function planFds(limitsText: string | undefined = readLimits(), counters?: Int32Array): FdPlan {
  const m = limitsText ? /^Max open files\s+(\d+|unlimited)\s+/m.exec(limitsText) : null;
  const limit = m ? (m[1] === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(m[1])) : undefined;
  const l = limit ?? UNKNOWN_LIMIT;
  const reserve = Math.min(Math.max(MIN_RESERVE, Math.floor(l / 10)), Math.floor(l / 2));
  // The counters may be shared memory: every worker of the process counts against one limit.
  const budget = createFdBudget({ capacity: l - reserve, listenerShare: { outbound: 0.5, socks5: 0.25, hbone: 0.25, plaintext: 0.25 } }, counters);
  return { limit, reserve, budget };
}

function readLimits(): string | undefined {
  try {
    return readFileSync("/proc/self/limits", "utf8");
  } catch {
    return undefined;
  }
}
