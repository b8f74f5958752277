import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { cleanNamespaces, ownerPid } from "./clean.js";
import { listNamespaces, run } from "./run.js";

const script = fileURLToPath(new URL("../../../scripts/netns-clean", import.meta.url));
const mine = `zt-${String(process.pid)}-clean`;
const made: string[] = [];

/** A pid that was ours a moment ago and has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""]);
  await once(child, "exit");
  const pid = child.pid ?? 0;
  if (existsSync(`/proc/${String(pid)}`)) throw new Error(`pid ${String(pid)} reused already`);
  return pid;
}

async function addNs(ns: string): Promise<void> {
  await run(["ip", "netns", "add", ns]);
  made.push(ns);
}

afterAll(async () => {
  const live = await listNamespaces();
  for (const ns of made) if (live.includes(ns)) await run(["ip", "netns", "del", ns]);
});

describe("leftover namespace cleanup (needs root)", () => {
  it("reads the creating pid from the name", () => {
    expect(ownerPid("zt-123-n0-p1")).toBe(123);
    expect(ownerPid("zt-123")).toBe(123);
    expect(ownerPid("zt-abc-n0")).toBeUndefined();
    expect(ownerPid("zt-12x")).toBeUndefined();
  });

  it("scripts/netns-clean removes namespaces of dead pids and keeps those of live ones", async () => {
    const stale = `zt-${String(await deadPid())}-cleantest`;
    await addNs(stale);
    await addNs(mine);
    const { stdout } = await run([script]);
    expect(stdout).toContain(`removed ${stale}\n`);
    expect(stdout).not.toContain(mine);
    const live = await listNamespaces();
    expect(live).not.toContain(stale);
    expect(live).toContain(mine);
  });

  it("cleanNamespaces() (zt-lab clean) does the same", async () => {
    const stale = `zt-${String(await deadPid())}-cleantest2`;
    await addNs(stale);
    const removed = await cleanNamespaces();
    expect(removed).toContain(stale);
    expect(removed).not.toContain(mine);
    expect(await listNamespaces()).toContain(mine);
  });
});
