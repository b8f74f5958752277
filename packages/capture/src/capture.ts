import { randomBytes } from "node:crypto";
import { ZtError } from "@zt/errors";
import { missingTools, runTool } from "./exec.js";
import { chainsOf, jumpsOf, ruleTables, type CaptureParams } from "./rules.js";

/** Installed node rules: the pod set follows discovery; remove() takes everything away. */
export interface Capture {
  readonly params: CaptureParams;
  /** Replace the ipset's members with exactly these IPv4 addresses (atomic swap). */
  syncPods(ips: Iterable<string>): Promise<void>;
  /** Current members, for config_dump and tests. */
  pods(): readonly string[];
  remove(): Promise<void>;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Install the capture rules, or converge the ones in force (a running predecessor's, or the
 * leftovers of a crashed run) without a moment in which they are missing, with the pod set
 * filled first. On a failure the error is thrown; a fresh install is removed again first
 * (the node is never left half-captured), rules that were already in force stay.
 */
export async function installCapture(params: CaptureParams, podIps: Iterable<string>): Promise<Capture> {
  const missing = missingTools();
  if (missing.length > 0) {
    throw new ZtError("CAPTURE_TOOL_MISSING", `REDIRECT_MODE=tproxy needs ${missing.join(", ")} on PATH (packages iptables, ipset, iproute2); nothing was changed`);
  }
  const inForce = await rulesInForce(params);
  let members: string[] = [];
  const syncPods = async (ips: Iterable<string>): Promise<void> => {
    const want = [...new Set([...ips].filter((ip) => !ip.includes(":")))].sort();
    try {
      await runTool(["ipset", "restore"], setRestore(params, want));
    } catch (e) {
      // The pod set is untouched (the swap never ran); do not leave the half-filled temporary set.
      await runTool(["ipset", "destroy", tmpSet(params)]).catch(() => undefined);
      throw e;
    }
    members = want;
  };
  try {
    await syncPods(podIps);
    await installRouting(params);
    await applyTables(params, "install");
    await destroyStaleSets(params);
  } catch (e) {
    // Rules in force keep capturing (each step above replaces its piece atomically, so a
    // failed one left the previous piece): removing them would let pods' traffic bypass capture.
    if (!inForce) await removeCapture(params).catch(() => undefined);
    throw e;
  }
  let removed: Promise<void> | undefined;
  return {
    params,
    syncPods: (ips) => (removed ? Promise.resolve() : syncPods(ips)),
    pods: () => members,
    remove: () => (removed ??= removeCapture(params)),
  };
}

/** Remove every rule, route, rule and set this package installs; missing pieces are fine. */
export async function removeCapture(params: CaptureParams): Promise<void> {
  const errors: Error[] = [];
  const attempt = async (f: () => Promise<unknown>): Promise<void> => {
    try {
      await f();
    } catch (e) {
      errors.push(e as Error);
    }
  };
  await attempt(() => applyTables(params, "remove"));
  await attempt(() => removeRouting(params));
  // The sets go last: iptables rules that reference the set must be gone first.
  await attempt(async () => {
    for (const name of await ourSets(params)) await runTool(["ipset", "destroy", name]);
  });
  if (errors.length > 0) {
    throw new ZtError("CAPTURE_REMOVE_FAILED", `removing the capture rules left ${errors.length} problem(s): ${errors.map((e) => e.message).join(" | ")}`);
  }
}

// Each process fills its own temporary set: two agents of a node (one handing over to the
// other) may update the pod set at the same moment, and must not fill or swap each other's.
const processTag = randomBytes(3).toString("hex");
const tmpSet = (p: CaptureParams): string => `${p.ipset.slice(0, 24)}-${processTag}`;
const isTmpSet = (p: CaptureParams, name: string): boolean =>
  name.startsWith(`${p.ipset.slice(0, 24)}-`) && /^(?:[0-9a-f]{6}|tmp)$/.test(name.slice(p.ipset.slice(0, 24).length + 1));

/** The pod set and every temporary set (this process's and leftovers), the pod set first. */
async function ourSets(p: CaptureParams): Promise<string[]> {
  const names = (await runTool(["ipset", "list", "-n"])).stdout.split("\n");
  return [...names.filter((n) => n === p.ipset), ...names.filter((n) => n !== p.ipset && isTmpSet(p, n))];
}

/** Temporary sets left by crashed runs (another agent's in-flight one, if hit, only fails its own update). */
async function destroyStaleSets(p: CaptureParams): Promise<void> {
  for (const name of await ourSets(p)) if (name !== p.ipset && name !== tmpSet(p)) await runTool(["ipset", "destroy", name]).catch(() => undefined);
}

/** Whether the node has our rules in force now: a jump into our PREROUTING chain. */
async function rulesInForce(p: CaptureParams): Promise<boolean> {
  const saved = (await runTool(["iptables-save", "-t", "mangle"])).stdout.split("\n");
  return saved.some((l) => l.startsWith("-A PREROUTING ") && l.endsWith(` -j ${chainsOf(p).prerouting}`));
}

function setRestore(p: CaptureParams, ips: readonly string[]): string {
  const tmp = tmpSet(p);
  const lines = [`create ${p.ipset} hash:ip family inet -exist`, `create ${tmp} hash:ip family inet -exist`, `flush ${tmp}`];
  for (const ip of ips) lines.push(`add ${tmp} ${ip}`);
  lines.push(`swap ${tmp} ${p.ipset}`, `destroy ${tmp}`);
  return `${lines.join("\n")}\n`;
}

const lockArgs = (p: CaptureParams): string[] => ["-w", String(p.lockWaitSeconds)];

/**
 * One iptables-restore transaction per table. Install: our chains (re)declared and filled,
 * every old jump deleted and one jump inserted first in each built-in chain (ahead of
 * kube-proxy's). Remove: jumps deleted, chains flushed and deleted.
 */
async function applyTables(p: CaptureParams, mode: "install" | "remove"): Promise<void> {
  const tables = ruleTables(p);
  const chains = chainsOf(p);
  for (const table of ["mangle", "nat"] as const) {
    const saved = (await runTool(["iptables-save", "-t", table])).stdout.split("\n");
    const ours = table === "mangle" ? [chains.prerouting, chains.divert, chains.output] : [chains.natPrerouting];
    const present = new Set(saved.filter((l) => l.startsWith(":")).map((l) => l.slice(1).split(" ")[0]));
    const lines = [`*${table}`];
    // Old jumps into our chains, however they were written.
    for (const l of saved) {
      const m = /^-A (\S+) (.*-j (\S+))$/.exec(l);
      if (m && ours.includes(m[3] ?? "") && !ours.includes(m[1] ?? "")) lines.push(`-D ${m[1]} ${m[2]}`);
    }
    if (mode === "install") {
      lines.push(...tables[table]);
      for (const j of jumpsOf(p).filter((j) => j.table === table)) lines.push(`-I ${j.chain} 1 ${j.spec}`);
    } else {
      for (const c of ours) if (present.has(c)) lines.push(`-F ${c}`);
      for (const c of ours) if (present.has(c)) lines.push(`-X ${c}`);
    }
    lines.push("COMMIT", "");
    if (mode === "remove" && lines.length === 3) continue;
    await runTool(["iptables-restore", "--noflush", ...lockArgs(p)], lines.join("\n"));
  }
}

interface IpRule {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
}

async function ourRules(p: CaptureParams): Promise<IpRule[]> {
  const { stdout } = await runTool(["ip", "-4", "-json", "rule", "show"]);
  const rules = JSON.parse(stdout || "[]") as IpRule[];
  return rules.filter((r) => r.table === String(p.routeTable) && r.fwmark !== undefined && Number(r.fwmark) === p.captureMark);
}

/** The rule is added before any stray copy is deleted: captured packets always find the local route. */
async function installRouting(p: CaptureParams): Promise<void> {
  await runTool(["ip", "-4", "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", String(p.routeTable)]);
  const existing = await ourRules(p);
  const keep = existing.find((r) => r.priority === p.rulePriority && Number(r.fwmask ?? p.markMask) === p.markMask);
  if (!keep) await runTool(["ip", "-4", "rule", "add", "priority", String(p.rulePriority), "fwmark", `${hex(p.captureMark)}/${hex(p.markMask)}`, "table", String(p.routeTable)]);
  for (const r of existing) {
    if (r !== keep) await runTool(["ip", "-4", "rule", "del", "priority", String(r.priority), "fwmark", `${r.fwmark}/${r.fwmask ?? hex(p.markMask)}`, "table", String(p.routeTable)]);
  }
}

async function removeRouting(p: CaptureParams): Promise<void> {
  for (const r of await ourRules(p)) {
    await runTool(["ip", "-4", "rule", "del", "priority", String(r.priority), "fwmark", `${r.fwmark}/${r.fwmask ?? hex(p.markMask)}`, "table", String(p.routeTable)]);
  }
  const { stdout } = await runTool(["ip", "-4", "route", "show", "table", String(p.routeTable)]);
  if (stdout.trim() !== "") await runTool(["ip", "-4", "route", "flush", "table", String(p.routeTable)]);
}

/** What is installed right now (iptables-save of our chains, ip rules, set members), for dumps and tests. */
export async function describeInstalled(p: CaptureParams): Promise<{ rules: string[]; ipRules: number; routes: string[]; sets: string[] }> {
  const chains = Object.values(chainsOf(p));
  const rules: string[] = [];
  for (const table of ["mangle", "nat"]) {
    for (const l of (await runTool(["iptables-save", "-t", table])).stdout.split("\n")) {
      if (chains.some((c) => l.includes(c))) rules.push(`${table}: ${l}`);
    }
  }
  const routes = (await runTool(["ip", "-4", "route", "show", "table", String(p.routeTable)])).stdout.split("\n").filter((l) => l !== "");
  return { rules, ipRules: (await ourRules(p)).length, routes, sets: await ourSets(p) };
}
