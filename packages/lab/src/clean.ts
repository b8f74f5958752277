import { readFileSync } from "node:fs";
import { listNamespaces, run } from "./run.js";

/** The creating pid encoded in a lab namespace name `zt-<pid>-…`, or undefined for other names. */
export function ownerPid(ns: string): number | undefined {
  const m = /^zt-(\d+)(?:-|$)/.exec(ns);
  return m === null ? undefined : Number(m[1]);
}

/** Alive = /proc has it and it is not a zombie (a killed lab may linger unreaped for a moment). */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * Delete leftover lab namespaces: those named `zt-<pid>-…` whose pid is no longer alive, or every `zt-*`
 * namespace with `all`. Never touches any other name. Returns the names removed.
 */
export async function cleanNamespaces(opts: { all?: boolean } = {}): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await listNamespaces()) {
    if (!ns.startsWith("zt-")) continue;
    const pid = ownerPid(ns);
    const stale = opts.all === true || (pid !== undefined && !pidAlive(pid));
    if (!stale) continue;
    await run(["ip", "netns", "del", ns]);
    removed.push(ns);
  }
  return removed;
}
