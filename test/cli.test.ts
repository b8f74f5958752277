import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { httpGet, loopbackEnv, socksConnect, startAgentProcess, startEcho, ZTUNNEL_BIN } from "@zt/harness";
import { envHelp } from "@zt/ztunnel";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";
import { alive, descendants } from "./support/procs.js";

// `ztunnel run` as users start it: bad input stops it with named errors; certificates rotate live.
const run = promisify(execFile);
const files = workloadDir();

async function start(env: Record<string, string>): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [ZTUNNEL_BIN, "run"], { env: { PATH: process.env["PATH"] ?? "", ...env }, timeout: 15_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

describe("ztunnel run refuses bad input with named errors", () => {
  test("every invalid variable is reported at once, and the agent does not start", async () => {
    const r = await start({ OUTBOUND_TRAFFIC_POLICY: "SOMETIMES", ADMIN_ADDR: "localhost", SECRET_TTL: "soon" });
    expect(r.code).toBe(78);
    for (const name of ["OUTBOUND_TRAFFIC_POLICY", "ADMIN_ADDR", "SECRET_TTL"]) expect(r.out).toContain(name);
    expect(r.out).toContain("SOMETIMES");
  });

  test("a malformed workload file names the file, the entry and the field", async () => {
    const file = files.write("bad.yaml", "workloads:\n- {name: x, namespace: default, workloadIps: [\"10.0.0.300\"]}\n");
    const r = await start({ ...loopbackEnv("127.15.1.1", `${files.dir}/ca`), NODE_NAME: "n", LOCAL_XDS_PATH: file, LOG_FORMAT: "json" });
    expect(r.code).toBe(1);
    expect(r.out).toContain(file);
    expect(r.out).toContain("workloads[0]");
    expect(r.out).toContain("workloadIps[0]");
  });

  test("a port already taken names the address and the variable", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(15000, "127.15.1.1", () => r()));
    try {
      const r = await start({ ...loopbackEnv("127.15.1.1", `${files.dir}/ca`), NODE_NAME: "n", LOCAL_XDS_PATH: files.write("ok.yaml", meshYaml(15)) });
      expect(r.code).toBe(1);
      expect(r.out).toContain("127.15.1.1:15000");
      expect(r.out).toContain("ADMIN_ADDR");
    } finally {
      blocker.close();
    }
  });
});

describe("certificate rotation", () => {
  test("certificates rotate (by half of their lifetime) while a live connection keeps flowing", async () => {
    const file = files.write("rot.yaml", meshYaml(16));
    const env = { ...loopbackEnv("127.16.1.1", `${files.dir}/ca16`), LOCAL_XDS_PATH: file, SECRET_TTL: "10s" };
    const agent = await startAgentProcess("node-a", env);
    const echo = await startEcho("127.16.1.11", 8080);
    try {
      const serial = async (): Promise<string> => {
        const dump = JSON.parse((await agent.get("admin", "/config_dump")).body) as { certificates: { identity: string; certChain: { serialNumber: string }[] }[] };
        return dump.certificates.find((c) => c.identity.endsWith("/sa/sleep"))!.certChain[0]!.serialNumber;
      };
      const first = await serial();
      const sock = await socksConnect({ proxy: { host: "127.16.1.1", port: 15080 }, localAddress: "127.16.1.10", host: "127.16.1.11", port: 8080 });
      let got = 0;
      sock.on("data", (c: Buffer) => (got += c.length));
      sock.resume();
      sock.write(Buffer.alloc(1000));
      await until("rotation", serial, (s) => s !== first, 12_000);
      sock.write(Buffer.alloc(1000));
      await until("echo after rotation", () => got, (n) => n === 2000);
      sock.end();
      await until("rotation logged", () => agent.logs.some((l) => l["msg"] === "certificate rotated"), (v) => v);
    } finally {
      echo.close();
      await agent.stop();
    }
  });
});

describe("ztunnel --help", () => {
  const help = async (args: string[], cwd: string): Promise<{ code: number; out: string }> => {
    try {
      const r = await run(process.execPath, [ZTUNNEL_BIN, ...args], { cwd, env: { PATH: process.env["PATH"] ?? "" }, timeout: 15_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, out: err.stdout + err.stderr };
    }
  };

  test("on any command prints the commands, every variable of the config table with its default, and the ports; run --help starts nothing", async () => {
    const cwd = files.dir;
    const vars = envHelp();
    expect(vars.map((v) => v.env)).toContain("NODE_NAME");
    for (const args of [["run", "--help"], ["--help"], ["help"], ["help", "run"], ["version", "--help"], []]) {
      const r = await help(args, cwd);
      expect(r.code, args.join(" ")).toBe(0);
      for (const v of vars) expect(r.out).toMatch(new RegExp(`\\n  ${v.env} +${v.default.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
      for (const port of ["15000", "15001", "15006", "15008", "15020", "15021", "15080"]) expect(r.out).toContain(`:${port} `);
      expect(r.out).toContain("run ");
    }
    expect(existsSync(path.join(cwd, ".ztunnel"))).toBe(false);
  });

  test("a usage error exits 2 with a hint, and starts nothing", async () => {
    for (const args of [["start"], ["run", "now"], ["run", "--bogus"]]) {
      const r = await help(args, files.dir);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.out).toContain("ztunnel --help");
    }
    expect(existsSync(path.join(files.dir, ".ztunnel"))).toBe(false);
  });
});

describe("npm run ztunnel", () => {
  test("passes SIGTERM on to the agent, which drains and exits (no orphan); STARTED_FILE is there while it runs", async () => {
    const root = fileURLToPath(new URL("..", import.meta.url));
    const host = "127.52.1.1";
    const started = path.join(files.dir, "started-52");
    // Left by a crashed agent: the new one must not count as started until it is.
    writeFileSync(started, "12345\n");
    const env = { ...process.env, ...loopbackEnv(host, `${files.dir}/ca52`), NODE_NAME: "node-a", LOCAL_XDS_PATH: files.write("npm.yaml", meshYaml(52)), LOG_FORMAT: "json", STARTED_FILE: started };
    const npm = spawn("npm", ["run", "--silent", "ztunnel", "--", "run"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    npm.stdout.on("data", (c: Buffer) => (out += c.toString()));
    npm.stderr.on("data", (c: Buffer) => (out += c.toString()));
    let agentPid: number | undefined;
    try {
      await until("agent ready", () => httpGet(`${host}:15021`, "/healthz/ready").then((r) => r.status, () => 0), (s) => s === 200, 20_000);
      // The node process itself (without exec, a shell running the same command line sits in between).
      agentPid = descendants(npm.pid!).find((p) => readFileSync(`/proc/${p}/comm`, "utf8").trim() === "node" && readFileSync(`/proc/${p}/cmdline`, "utf8").includes("ztunnel/dist/cli.js"));
      expect(agentPid).toBeDefined();
      await until("STARTED_FILE written by this agent", () => (existsSync(started) ? readFileSync(started, "utf8") : ""), (t) => t === `${agentPid}\n`);
      npm.kill("SIGTERM");
      await until("agent gone", () => alive(agentPid!), (a) => !a, 15_000);
      expect(existsSync(started)).toBe(false);
      expect(out).toContain('"msg":"draining"');
      expect(out).toContain('"reason":"SIGTERM"');
    } finally {
      if (agentPid !== undefined && alive(agentPid)) process.kill(agentPid, "SIGKILL");
      if (npm.exitCode === null) npm.kill("SIGKILL");
    }
  });
});
