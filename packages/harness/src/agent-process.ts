import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { fileURLToPath } from "node:url";
import { onJsonLines } from "./json-lines.js";
import http from "node:http";
import { outputWatcher } from "./watch-output.js";

/** The agent's bin, built by `tsc -b` (the README's setup does it). */
export const ZTUNNEL_BIN = fileURLToPath(new URL("../../ztunnel/dist/cli.js", import.meta.url));

export interface AgentProcess {
  readonly node: string;
  readonly env: Record<string, string>;
  readonly proc: ChildProcess;
  /** Parsed JSON log lines so far. */
  readonly logs: Record<string, unknown>[];
  /** Access-log lines (component "access"). */
  accessLogs(): Record<string, unknown>[];
  /** GET an admin/stats/readiness path; resolves with status and body. */
  get(which: "admin" | "stats" | "readiness", path: string): Promise<{ status: number; body: string }>;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/**
 * Start `ztunnel run` as a child process (optionally through a prefix such as
 * `ip netns exec <ns>`), and wait until /healthz/ready answers 200.
 */
export interface AgentProcessOptions {
  /** Command prefix, e.g. `ip netns exec <ns>`. */
  readonly prefix?: string[];
  readonly readyTimeoutMs?: number;
  /** How to GET from the agent's HTTP ports when they are not reachable from here (another netns). */
  readonly httpGet?: (addr: string, path: string) => Promise<{ status: number; body: string }>;
  /** "ready" (default): resolve once /healthz/ready is 200; "answering": once it answers at all (e.g. to test a 503). */
  readonly waitFor?: "ready" | "answering";
  /** Append the agent's stdout and stderr to this file. */
  readonly logFile?: string;
  /** Keep parsed log lines in `logs` (default true; a long-running CLI with a logFile turns it off). */
  readonly keepLogs?: boolean;
}

export async function startAgentProcess(node: string, env: Record<string, string>, opts: AgentProcessOptions = {}): Promise<AgentProcess> {
  const argv = [...(opts.prefix ?? []), process.execPath, ZTUNNEL_BIN, "run"];
  const proc = spawn(argv[0]!, argv.slice(1), {
    // ZTUNNEL_WORKER_THREADS passes through: the suite runs once with each setting (package.json "test").
    env: { PATH: process.env["PATH"] ?? "", LOG_FORMAT: "json", ...workerThreads(), ...env, NODE_NAME: node },
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(proc);
  if (opts.logFile !== undefined) {
    const file = createWriteStream(opts.logFile, { flags: "a" });
    proc.stdout!.pipe(file, { end: false });
    proc.stderr!.pipe(file, { end: false });
    proc.once("close", () => file.end());
  }
  const keep = opts.keepLogs ?? true;
  const logs: Record<string, unknown>[] = [];
  let startLine = false;
  const sawStart = outputWatcher("ztunnel ready to accept");
  let stderr = "";
  proc.stdout!.on("data", (chunk: Buffer) => {
    if (!startLine) startLine = sawStart(chunk.toString());
  });
  if (keep) onJsonLines(proc.stdout!, (l) => logs.push(l));
  proc.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  // 'close', not 'exit': by then stdout has ended, so every log line the agent wrote has been read.
  const exited = new Promise<number | null>((resolve) => proc.once("close", (code) => resolve(code)));
  const addr = (which: "admin" | "stats" | "readiness"): string => {
    const key = { admin: "ADMIN_ADDR", stats: "STATS_ADDR", readiness: "READINESS_ADDR" }[which];
    const v = env[key];
    if (!v) throw new Error(`${key} must be set for a harness agent`);
    return v;
  };
  const get = (which: "admin" | "stats" | "readiness", path: string): Promise<{ status: number; body: string }> =>
    opts.httpGet ? opts.httpGet(addr(which), path) : httpGet(addr(which), path);
  const agent: AgentProcess = {

    node,
    env,
    proc,
    logs,
    accessLogs: () => logs.filter((l) => l["component"] === "access"),
    get,
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      return exited;
    },
  };
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  // Until this agent has bound its own ports, the readiness port may still be another agent's
  // (the one it takes over from): trust the answer only after this agent's start log line.
  const started = (): boolean => startLine;
  for (;;) {
    if (exitedEarly) throw new Error(`agent ${node} exited during start: ${stderr}${logs.map((l) => JSON.stringify(l)).join("\n")}${opts.logFile ? ` (log: ${opts.logFile})` : ""}`);
    try {
      const r = started() ? await get("readiness", "/healthz/ready") : undefined;
      if (r !== undefined && (r.status === 200 || opts.waitFor === "answering")) return agent;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`agent ${node} not ready in time: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const children = new Set<ChildProcess>();
let hooked = false;

/** Agents die with the harness: on exit and on SIGINT/SIGTERM, kill every child still running. */
function track(proc: ChildProcess): void {
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  if (hooked) return;
  hooked = true;
  const killAll = (): void => {
    for (const c of children) c.kill("SIGKILL");
  };
  process.once("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      // A caller with its own handler (a CLI tearing down a cluster) stops the agents itself,
      // with SIGTERM so that they drain and remove their rules; the exit hook is the last resort.
      if (process.listenerCount(sig) > 0) return;
      killAll();
      process.exit(130);
    });
  }
}

/** GET http://<addr><path> with no keep-alive. */
export function httpGet(addr: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const [host, port] = splitAddr(addr);
    const req = http.get({ host, port, path, agent: false, timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

function splitAddr(a: string): [string, number] {
  const i = a.lastIndexOf(":");
  return [a.slice(0, i).replace(/^\[|\]$/g, ""), Number(a.slice(i + 1))];
}

function workerThreads(): Record<string, string> {
  const n = process.env["ZTUNNEL_WORKER_THREADS"];
  return n ? { ZTUNNEL_WORKER_THREADS: n } : {};
}
