import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
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

// argv: dist, ips, rounds. Installs (converges), says "ready", waits for "go", then syncs `rounds` times.
const SYNCER = `
const { installCapture, defaultCaptureParams } = await import(process.argv[1]);
const ips = JSON.parse(process.argv[2]);
const cap = await installCapture(defaultCaptureParams, ips);
process.stdout.write("ready\\n");
await new Promise((r) => process.stdin.once("data", r));
const errors = [];
for (let i = 0; i < Number(process.argv[3]); i++) await cap.syncPods(ips).catch((e) => errors.push(e.message));
process.stdout.write(JSON.stringify({ errors }));
process.exit(0);
`;

type Step = { op: "install" | "sync" | "remove" | "removeAll" | "describe"; ips?: string[]; params?: Record<string, unknown> };

function inNs(argv: string[], env?: NodeJS.ProcessEnv): string {
  return execFileSync("ip", ["netns", "exec", NS, ...argv], { encoding: "utf8", env: env ?? process.env });
}
function drive(steps: Step[], env?: NodeJS.ProcessEnv): unknown[] {
  return JSON.parse(inNs([process.execPath, "--input-type=module", "-e", DRIVER, DIST, JSON.stringify(steps)], env)) as unknown[];
}
const EMPTY = { rules: [], ipRules: 0, routes: [], sets: [] };
const execFileP = promisify(execFile);

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

  it("a failed convergence over rules in force leaves them in force (never a moment without capture)", () => {
    const [, before, failed, after] = drive([
      { op: "install", ips: ["10.0.0.1"] },
      { op: "describe" },
      // An address ipset refuses: the convergence fails at its first step.
      { op: "install", ips: ["10.0.0.1", "10.0.0.300"] },
      { op: "describe" },
    ]) as [unknown, { rules: string[] }, { error: string }, unknown];
    expect(failed.error).toBe("CAPTURE_COMMAND_FAILED");
    expect(before.rules.length).toBeGreaterThan(5);
    expect(after).toEqual(before);
    expect(inNs(["ipset", "list", "ztunnel-pods-ips"])).toMatch(/Members:\n10\.0\.0\.1\n?$/);
    expect(drive([{ op: "removeAll" }, { op: "describe" }])).toEqual(["removed", EMPTY]);
  });

  it("two processes updating the pod set at once (an agent and its successor) only ever swap in a whole set", async () => {
    const sets = [Array.from({ length: 200 }, (_, i) => `10.1.${i >> 8}.${i & 255}`), Array.from({ length: 200 }, (_, i) => `10.2.${i >> 8}.${i & 255}`)];
    const agents: ChildProcess[] = [];
    const results: Promise<{ errors: string[] }>[] = [];
    for (const ips of sets) {
      const child = spawn("ip", ["netns", "exec", NS, process.execPath, "--input-type=module", "-e", SYNCER, DIST, JSON.stringify(ips), "40"], { stdio: ["pipe", "pipe", "inherit"] });
      agents.push(child);
      let out = "";
      const ready = new Promise<void>((resolve) => child.stdout!.on("data", (b: Buffer) => ((out += b.toString()), out.startsWith("ready\n") && resolve())));
      results.push(new Promise((resolve) => child.once("exit", () => resolve(JSON.parse(out.slice("ready\n".length)) as { errors: string[] }))));
      // One after the other, as an agent and its successor start.
      await ready;
    }
    for (const a of agents) a.stdin!.write("go\n");
    const seen = new Set<string>();
    let running = true;
    void Promise.all(results).then(() => (running = false));
    while (running) {
      const { stdout } = await execFileP("ip", ["netns", "exec", NS, "ipset", "save", "ztunnel-pods-ips"]);
      const members = stdout.split("\n").filter((l) => l.startsWith("add ")).map((l) => l.split(" ")[2]).sort();
      seen.add(members.join(",") === [...sets[0]!].sort().join(",") ? "first" : members.join(",") === [...sets[1]!].sort().join(",") ? "second" : `mixed (${members.length} members)`);
    }
    expect((await Promise.all(results)).flatMap((r) => r.errors)).toEqual([]);
    expect([...seen].filter((s) => s.startsWith("mixed"))).toEqual([]);
    expect(drive([{ op: "removeAll" }, { op: "describe" }])).toEqual(["removed", EMPTY]);
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
