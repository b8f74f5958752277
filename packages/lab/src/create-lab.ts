import { execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from "node:child_process";
import { once } from "node:events";
import { planLab, type LabSpec, type PodMode, type ServiceSpec } from "./plan.js";
import { listNamespaces, run, type RunOptions, type RunResult } from "./run.js";
import { topologySteps } from "./topology.js";

export interface LabNode {
  name: string;
  ns: string;
  uplinkIp: string;
  podCidr: string;
}

export interface LabPod {
  name: string;
  node: string;
  ip: string;
  /** Pod namespace (pod-ns mode) or the node's namespace (host-ips mode). */
  ns: string;
}

export interface Lab {
  prefix: string;
  mode: PodMode;
  fabricNs: string;
  /** iptables nat chain with the service DNAT rules (present in every node namespace when services exist). */
  chain: string;
  nodes: LabNode[];
  pods: LabPod[];
  services: ServiceSpec[];
  /** Every namespace this lab created, in creation order. */
  namespaces: string[];
  node(name: string): LabNode;
  pod(name: string): LabPod;
  /** Run argv inside one of this lab's namespaces; rejects with LabCommandError on failure. */
  exec(ns: string, argv: readonly string[], opts?: Omit<RunOptions, "onSpawn">): Promise<RunResult>;
  /** Start argv inside one of this lab's namespaces; destroy() stops it (by pid). */
  spawn(ns: string, argv: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Stop spawned processes, delete every namespace created. Idempotent. */
  destroy(): Promise<void>;
}

let defaultCount = 0;

/** `zt-<pid>` for the first default lab of this process, `zt-<pid>-<k>` when that is taken. */
function pickPrefix(existing: readonly string[]): string {
  for (;;) {
    const k = defaultCount++;
    const prefix = k === 0 ? `zt-${String(process.pid)}` : `zt-${String(process.pid)}-${String(k)}`;
    if (!existing.some((ns) => ns === prefix || ns.startsWith(`${prefix}-`))) return prefix;
  }
}

const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null && c.pid !== undefined;

export async function createLab(spec: LabSpec): Promise<Lab> {
  const existing = await listNamespaces();
  const prefix = spec.prefix ?? pickPrefix(existing);
  const plan = planLab(spec, prefix);
  const clash = existing.find((ns) => ns === prefix || ns.startsWith(`${prefix}-`));
  if (clash !== undefined) throw new Error(`lab prefix ${prefix} is in use (namespace ${clash} exists)`);

  const created: string[] = [];
  const children = new Set<ChildProcess>();
  const track = (c: ChildProcess): void => {
    children.add(c);
    c.once("exit", () => children.delete(c));
  };
  let destroyed: Promise<void> | undefined;

  // Last resort if the process exits without destroy(): synchronous, and only for names we created.
  const onExit = (): void => {
    for (const c of children) if (alive(c)) c.kill("SIGKILL");
    for (const ns of created.toReversed()) {
      try {
        execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
      } catch {
        /* nothing more can be done while exiting */
      }
    }
  };
  process.on("exit", onExit);

  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      process.off("exit", onExit);
      await stopChildren([...children]);
      const errors: unknown[] = [];
      for (const ns of created.toReversed()) {
        try {
          await run(["ip", "netns", "del", ns]);
        } catch (e) {
          if (!/No such file/i.test(String(e))) errors.push(e);
        }
      }
      created.length = 0;
      if (errors.length > 0) throw new AggregateError(errors, `lab ${prefix}: teardown left ${String(errors.length)} error(s)`);
    })();
    return destroyed;
  };

  try {
    for (const step of topologySteps(plan)) {
      await run(step.argv, { timeoutMs: 30_000 });
      if (step.createsNs !== undefined) created.push(step.createsNs);
    }
  } catch (e) {
    await destroy().catch(() => undefined);
    throw e;
  }

  const owned = new Set(created);
  const checkNs = (ns: string): void => {
    if (!owned.has(ns) || destroyed !== undefined) throw new Error(`namespace ${ns} is not a live namespace of lab ${prefix}`);
  };
  const nodes: LabNode[] = plan.nodes.map((n) => ({ name: n.name, ns: n.ns, uplinkIp: n.uplinkIp, podCidr: n.podCidr }));
  const pods: LabPod[] = plan.pods.map((p) => ({ name: p.name, node: p.node, ip: p.ip, ns: p.ns }));
  const find = <T extends { name: string }>(list: T[], name: string, what: string): T => {
    const hit = list.find((x) => x.name === name);
    if (hit === undefined) throw new Error(`lab ${prefix} has no ${what} ${name}`);
    return hit;
  };

  return {
    prefix,
    mode: plan.mode,
    fabricNs: plan.fabricNs,
    chain: plan.chain,
    nodes,
    pods,
    services: plan.services,
    namespaces: [...created],
    node: (name) => find(nodes, name, "node"),
    pod: (name) => find(pods, name, "pod"),
    exec(ns, argv, opts = {}) {
      checkNs(ns);
      return run(["ip", "netns", "exec", ns, ...argv], { ...opts, onSpawn: track });
    },
    spawn(ns, argv, opts = {}) {
      checkNs(ns);
      const child = spawnChild("ip", ["netns", "exec", ns, ...argv], opts);
      track(child);
      return child;
    },
    destroy,
  };
}

/** SIGTERM every live child (by pid), SIGKILL those still running after 2 s. */
async function stopChildren(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.filter(alive).map(async (c) => {
      const exited = once(c, "exit");
      c.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (alive(c)) c.kill("SIGKILL");
      }, 2_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}
