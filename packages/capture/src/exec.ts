import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { ZtError } from "@zt/errors";

/** The programs the rules need; all are looked up before anything is changed. */
export const TOOLS = ["iptables-restore", "iptables-save", "ipset", "ip"] as const;

/** Tools absent from PATH (checked without running anything). */
export function missingTools(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = (env["PATH"] ?? "").split(":").filter((d) => d !== "");
  return TOOLS.filter(
    (t) =>
      !dirs.some((d) => {
        try {
          accessSync(path.join(d, t), constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }),
  );
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run one node-rule command (control plane only: at start, on discovery changes, at exit).
 * Failures become ZtErrors: CAPTURE_LOCKED for the xtables lock, CAPTURE_TOOL_MISSING for
 * a missing program, CAPTURE_COMMAND_FAILED otherwise, each with the command and its stderr.
 */
export function runTool(argv: readonly string[], input?: string, timeoutMs = 30_000): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("empty command");
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const shown = argv.join(" ");
      const text = stderr.trim().split("\n").slice(0, 3).join("; ");
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        reject(new ZtError("CAPTURE_TOOL_MISSING", `${file} is not installed or not on PATH; REDIRECT_MODE=tproxy needs ${TOOLS.join(", ")}`, { cause: err }));
      } else if (/xtables lock|holding the lock|Resource temporarily unavailable/i.test(stderr)) {
        reject(new ZtError("CAPTURE_LOCKED", `\`${shown}\` could not take the xtables lock (/run/xtables.lock) within the wait time: another program is changing iptables; ${text}`, { cause: err }));
      } else {
        reject(new ZtError("CAPTURE_COMMAND_FAILED", `\`${shown}\` failed: ${text || err.message}`, { cause: err }));
      }
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}
