/** Memory and CPU of processes, from /proc (Linux only). */
import { readdirSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

let clkTck = 100;
try {
  clkTck = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
} catch {
  // keep 100
}

/** The pid and all its descendants (threads are already inside a process's figures). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const todo = [pid];
  for (let guard = 0; todo.length && guard < 10_000; guard++) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** VmRSS in KiB of one process (0 if gone). */
export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Threads of one process (0 if gone). */
export function threads(pid: number): number {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Sum of VmRSS (KiB) over the given processes and their descendants. */
export function treeRssKiB(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) for (const p of processTree(pid)) sum += rssKiB(p);
  return sum;
}

/** CPU seconds (user + system) used so far by one process. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // after "pid (comm) ", field 3 (state) is index 0; utime is field 14, stime 15
    return (Number(f[11]) + Number(f[12])) / clkTck;
  } catch {
    return 0;
  }
}

/** CPU seconds over the given processes and their descendants. */
export function treeCpuSeconds(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) for (const p of processTree(pid)) sum += cpuSeconds(p);
  return sum;
}

/** CPU seconds used by this process (all its threads). */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** CPU seconds the whole machine spent busy (all CPUs), and stolen by the hypervisor, from /proc/stat. */
export function machineCpuSeconds(): { busy: number; steal: number } {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
    return { busy: (user! + nice! + system! + irq! + softirq!) / clkTck, steal: (steal ?? 0) / clkTck };
  } catch {
    return { busy: 0, steal: 0 };
  }
}

/** Open descriptors of one process: the entries of /proc/<pid>/fd (0 if gone). */
export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}
