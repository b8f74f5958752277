import { readdirSync } from "node:fs";
import { until } from "./metrics.js";

/** Open file descriptors of a process (sockets included), from /proc. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Wait until the process is back to `baseline` descriptors (connections take a moment to close). */
export async function settlesTo(pid: number, baseline: number, timeoutMs = 5000): Promise<number> {
  return until(`fd count of ${pid} back to ${baseline}`, () => fdCount(pid), (n) => n <= baseline, timeoutMs);
}
