import { spawn, type ChildProcess } from "node:child_process";

/** A command that failed: carries the exact argv and what it wrote to stderr. */
export class LabCommandError extends Error {
  readonly command: readonly string[];
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;

  constructor(command: readonly string[], exitCode: number | null, signal: NodeJS.Signals | null, stderr: string, cause?: unknown) {
    const how = signal !== null ? `signal ${signal}` : `exit ${String(exitCode)}`;
    const detail = stderr.trim() === "" ? "" : `: ${stderr.trim()}`;
    super(`command failed (${how}): ${formatCommand(command)}${detail}`, cause === undefined ? undefined : { cause });
    this.name = "LabCommandError";
    this.command = command;
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderr = stderr;
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string;
  /** Kill the child (SIGKILL) and fail after this long. */
  timeoutMs?: number;
  /** Called with the child as soon as it is spawned (for pid tracking). */
  onSpawn?: (child: ChildProcess) => void;
}

/** Quote an argv for error messages and logs (never executed by a shell). */
export function formatCommand(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}

/** Run argv[0] with the rest as arguments (no shell); resolve on exit 0, reject with LabCommandError otherwise. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("run: empty argv"));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
    opts.onSpawn?.(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill("SIGKILL");
          }, opts.timeoutMs);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.stdin.on("error", () => undefined); // child may exit without reading stdin
    child.stdin.end(opts.input ?? "");
    child.once("error", (e) => {
      if (timer !== undefined) clearTimeout(timer);
      reject(new LabCommandError(argv, null, null, e.message, e));
    });
    child.once("close", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code === 0 && !timedOut) resolve({ stdout, stderr });
      else reject(new LabCommandError(argv, code, signal, timedOut ? `timed out after ${String(opts.timeoutMs)} ms. ${stderr}` : stderr));
    });
  });
}

/** Names of the network namespaces that `ip netns list` shows (without the "(id: N)" suffix). */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run(["ip", "netns", "list"]);
  return stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n !== "");
}
