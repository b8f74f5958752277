import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { listNamespaces } from "@zt/lab";
import { until } from "./support/metrics.js";
import { alive } from "./support/procs.js";

// `zt-cluster up` (npm run cluster) as a child process: it comes up, logs each agent to a
// file, and SIGTERM to its pid tears everything down. Needs root: fails, never skips.
const CLI = fileURLToPath(new URL("../packages/harness/dist/cluster-cli.js", import.meta.url));
const logs = mkdtempSync(path.join(tmpdir(), "zt-cluster-cli-test-"));

afterAll(() => rmSync(logs, { recursive: true, force: true }));

describe("zt-cluster up", () => {
  test("writes each agent's log to a file, and SIGTERM to its pid stops the agents and deletes every namespace", async () => {
    if (process.getuid?.() !== 0) throw new Error("zt-cluster tests need root (CI runs as root): run `sudo npm test`");
    const child = spawn(process.execPath, [CLI, "up", "--nodes", "2", "--pods", "1", "--plain", "0", "--logs", logs], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    let prefix = "";
    try {
      await until("the cluster is up", () => out, (o) => o.includes("tears everything down"), 90_000);
      prefix = /cluster (zt-\d+\S*) is up/.exec(out)?.[1] ?? "";
      expect(prefix).toBe(`zt-${child.pid}`);
      expect((await listNamespaces()).filter((ns) => ns.startsWith(prefix)).length).toBeGreaterThan(0);
      expect(out).toContain(`agent logs: ${logs}/<node>.log`);
      const agentPids = [...out.matchAll(/agent pid (\d+)/g)].map((m) => Number(m[1]));
      expect(agentPids).toHaveLength(2);
      for (const node of ["node-1", "node-2"]) {
        const file = path.join(logs, `${node}.log`);
        expect(out).toContain(`log ${file}`);
        await until(`${node}'s log`, () => (existsSync(file) ? readFileSync(file, "utf8") : ""), (t) => t.includes("ztunnel ready to accept"));
      }

      child.kill("SIGTERM");
      expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 60_000))])).toBe(0);
      expect(err).toContain(`${prefix} torn down; agent logs kept in ${logs}`);
      expect((await listNamespaces()).filter((ns) => ns === prefix || ns.startsWith(`${prefix}-`))).toEqual([]);
      expect(agentPids.filter(alive)).toEqual([]);
      // The agents were stopped, not killed: each drained and removed its rules.
      for (const node of ["node-1", "node-2"]) expect(readFileSync(path.join(logs, `${node}.log`), "utf8")).toContain("ztunnel stopped");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }, 150_000);
});
