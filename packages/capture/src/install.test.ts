import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Real rules in a network namespace this test creates (root; fails without it, never skips).
// The built package runs inside the namespace: a process cannot change its own namespace.
const DIST = fileURLToPath(new URL("../dist/index.js", import.meta.url));
const NS = `zt-${process.pid}-cap`;
const tmp: string[] = [];

const DRIVER = `
const { installCapture, removeCapture, describeInstalled, defaultCaptureParams } = await import(process.argv[1]);
const steps = JSON.parse(process.argv[2]);
const out = [];
let cap;
for (const s of steps) {
  const params = { ...defaultCaptureParams, ...(s.params ?? {}) };
  try {
    if (s.op === "install") { cap = await installCapture(params, s.ips); out.push(cap.pods()); }
    else if (s.op === "sync") { await cap.syncPods(s.ips); out.push(cap.pods()); }
    else if (s.op === "remove") { await cap.remove(); out.push("removed"); }
    else if (s.op === "removeAll") { await removeCapture(params); out.push("removed"); }
    else if (s.op === "describe") out.push(await describeInstalled(params));
  } catch (e) { out.push({ error: e.code, message: e.message }); }
}
process.stdout.write(JSON.stringify(out));
`;

type Step = { op: "install" | "sync" | "remove" | "removeAll" | "describe"; ips?: string[]; params?: Record<string, unknown> };

function inNs(argv: string[], env?: NodeJS.ProcessEnv): string {
  return execFileSync("ip", ["netns", "exec", NS, ...argv], { encoding: "utf8", env: env ?? process.env });
}
function drive(steps: Step[], env?: NodeJS.ProcessEnv): unknown[] {
  return JSON.parse(inNs([process.execPath, "--input-type=module", "-e", DRIVER, DIST, JSON.stringify(steps)], env)) as unknown[];
}
const EMPTY = { rules: [], ipRules: 0, routes: [], sets: [] };

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error("capture install tests need root (CI runs as root): run `sudo npm test`");
  execFileSync("ip", ["netns", "add", NS]);
  inNs(["ip", "link", "set", "lo", "up"]);
});
afterAll(() => {
  execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

function binDir(links: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-bin-"));
  tmp.push(dir);
  for (const [name, target] of Object.entries(links)) symlinkSync(execFileSync("sh", ["-c", `command -v ${target}`], { encoding: "utf8" }).trim(), path.join(dir, name));
  return dir;
}

describe("installing the node rules", () => {
  it("installs, is idempotent, follows the pod set, and removes everything", () => {
    const [pods, first, again, second, synced, set, removed, after] = drive([
      { op: "install", ips: ["10.0.0.2", "10.0.0.1", "fd00::1"] },
      { op: "describe" },
      { op: "install", ips: ["10.0.0.1", "10.0.0.2"] },
      { op: "describe" },
      { op: "sync", ips: ["10.0.0.3"] },
      { op: "describe" },
      { op: "remove" },
      { op: "describe" },
    ]) as [string[], typeof EMPTY & { rules: string[] }, unknown, unknown, string[], unknown, string, unknown];
    expect(pods).toEqual(["10.0.0.1", "10.0.0.2"]);
    // Three jumps from built-in chains, and the socket match into the divert chain.
    expect(first.rules.filter((r) => r.includes("-j ZTUNNEL-"))).toHaveLength(4);
    expect(first).toMatchObject({ ipRules: 1, routes: ["local default dev lo scope host "], sets: ["ztunnel-pods-ips"] });
    expect(again).toEqual(pods);
    expect(second).toEqual(first);
    expect(synced).toEqual(["10.0.0.3"]);
    expect(set).toMatchObject({ sets: ["ztunnel-pods-ips"] });
    expect(removed).toBe("removed");
    expect(after).toEqual(EMPTY);
    expect(inNs(["iptables-save"])).not.toContain("ZTUNNEL");
  });

  it("converges over a crashed run's leftovers (duplicate jumps, a half-synced set)", () => {
    drive([{ op: "install", ips: ["10.0.0.1"] }]);
    inNs(["iptables", "-t", "mangle", "-A", "PREROUTING", "-m", "comment", "--comment", "ztunnel", "-j", "ZTUNNEL-PRERT"]);
    inNs(["ipset", "create", "ztunnel-pods-ips-tmp", "hash:ip"]);
    const [, d] = drive([{ op: "install", ips: ["10.0.0.9"] }, { op: "describe" }]) as [unknown, { sets: string[]; ipRules: number }];
    const save = inNs(["iptables-save"]);
    expect(save.split("\n").filter((l) => /^-A (PREROUTING|OUTPUT) .*-j ZTUNNEL-/.test(l))).toHaveLength(3);
    expect(d).toMatchObject({ sets: ["ztunnel-pods-ips"], ipRules: 1 });
    expect(inNs(["ipset", "list", "ztunnel-pods-ips"])).toMatch(/Members:\n10\.0\.0\.9\n?$/);
    expect(drive([{ op: "removeAll" }, { op: "describe" }])).toEqual(["removed", EMPTY]);
    expect(drive([{ op: "removeAll" }])).toEqual(["removed"]);
  });

  it("refuses without iptables, changing nothing", () => {
    const bin = binDir({ ip: "ip", ipset: "ipset" });
    const [r] = drive([{ op: "install", ips: ["10.0.0.1"] }], { ...process.env, PATH: bin }) as [{ error: string; message: string }];
    expect(r.error).toBe("CAPTURE_TOOL_MISSING");
    expect(r.message).toMatch(/iptables-restore, iptables-save.*nothing was changed/);
    expect(drive([{ op: "describe" }])).toEqual([EMPTY]);
  });

  it("gives up on a held xtables lock with CAPTURE_LOCKED and rolls back (legacy iptables)", async () => {
    const bin = binDir({ "iptables-restore": "iptables-legacy-restore", "iptables-save": "iptables-legacy-save", ip: "ip", ipset: "ipset" });
    const holder: ChildProcess = spawn("flock", ["/run/xtables.lock", "sleep", "30"], { stdio: "ignore" });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const [r, d] = drive([{ op: "install", ips: ["10.0.0.1"], params: { lockWaitSeconds: 1 } }, { op: "describe" }], { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` }) as [
        { error: string; message: string },
        unknown,
      ];
      expect(r.error).toBe("CAPTURE_LOCKED");
      expect(r.message).toContain("/run/xtables.lock");
      expect(d).toEqual(EMPTY);
      expect(inNs(["iptables-legacy-save"])).not.toContain("ZTUNNEL");
    } finally {
      holder.kill();
    }
  });
});
