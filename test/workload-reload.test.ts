import { renameSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, loopbackEnv, startAgentProcess, startEcho, type AgentProcess } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// Reloads of the workload file through a real agent on 127.51.1.1: a big valid file and an
// over-cap one, with readiness and SOCKS5 probed all along; the status in /config_dump and metrics.
const NET = 51;
const A = `127.${NET}.1`;
const HOST = `${A}.1`;
const MiB = 1024 * 1024;
/** The cap this agent runs with (LOCAL_XDS_MAX_BYTES; the default, 4 MiB, is checked in config.test.ts). */
const CAP = 8 * MiB;
/** Workloads in the big valid file: a parse of several seconds, which on the main thread would stall every probe. */
const BIG = 40_000;
const files = workloadDir();
const meshFile = files.write("mesh.yaml", meshYaml(NET));
let agent: AgentProcess;
let echo: net.Server;

beforeAll(async () => {
  agent = await startAgentProcess("node-a", { ...loopbackEnv(HOST, `${files.dir}/ca`), LOCAL_XDS_PATH: meshFile, LOCAL_XDS_MAX_BYTES: String(CAP) });
  echo = await startEcho(`${A}.11`, 8080);
});

afterAll(async () => {
  echo?.close();
  await agent?.stop();
});

/** The test mesh plus `n` workloads on other nodes (never contacted). */
function bigMesh(n: number): string {
  const extra: string[] = [];
  for (let i = 0; i < n; i++) {
    extra.push(`- {name: w-${i}, namespace: ns-${i % 50}, serviceAccount: sa-${i % 20}, workloadIps: ["10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}"], protocol: HBONE, node: far-${i % 100}}\n`);
  }
  return meshYaml(NET).replace("services:\n", `${extra.join("")}services:\n`);
}

/** Write by rename, as config tools do, so the agent never sees half a file. */
function atomicWrite(text: string): void {
  const tmp = `${meshFile}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, meshFile);
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms))]);
}

interface Probe {
  readonly ready: string;
  readonly socks: string;
}

/** Readiness and a SOCKS5 echo through the agent, one after the other, until `done()`. */
async function probeUntil(done: () => boolean, timeoutMs = 120_000): Promise<Probe[]> {
  const out: Probe[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`reload not finished in ${timeoutMs} ms`);
    // Generous for a loaded machine, and still far shorter than the parse: a stalled event loop fails it.
    const ready = await within(agent.get("readiness", "/healthz/ready"), 5000).then((r) => String(r.status), (e: Error) => e.message);
    const socks = await within(echoFlow({ host: HOST, port: 15080 }, `${A}.10`, `${A}.11`, 8080, 4096), 5000).then((r) => r.detail, (e: Error) => e.message);
    out.push({ ready, socks });
    await new Promise((r) => setTimeout(r, 50));
  }
  return out;
}

const logSince = (from: number, msg: string): Record<string, unknown> | undefined =>
  agent.logs.slice(from).find((l) => String(l["msg"]).startsWith(msg));

interface Dump {
  workloads: unknown[];
  warnings: string[];
  source: { state: string; maxBytes: number; lastGood: { workloads: number; stateVersion: number }; lastError: { code: string; message: string; at: string } | null; reloads: { ok: number; rejected: number } };
}
const dump = async (): Promise<Dump> => JSON.parse((await agent.get("admin", "/config_dump")).body) as Dump;
const metrics = async (): Promise<string> => (await agent.get("stats", "/metrics")).body;

describe("workload file reloads do not stop the agent", () => {
  test("a big valid file is parsed off the main thread: readiness and SOCKS5 answer during the reload", async () => {
    const n = BIG;
    const text = bigMesh(n);
    expect(Buffer.byteLength(text)).toBeLessThan(CAP);
    const from = agent.logs.length;
    atomicWrite(text);
    const probes = await probeUntil(() => logSince(from, "workload file reloaded") !== undefined);
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.filter((p) => p.ready !== "200" || p.socks !== "intact")).toEqual([]);
    const d = await dump();
    expect(d.workloads.length).toBe(n + 6);
    expect(d.source).toMatchObject({ state: "current", lastGood: { workloads: n + 6 }, lastError: null, reloads: { ok: 1, rejected: 0 } });
  }, 150_000); // the parse takes seconds alone, far longer on a loaded machine

  test("an over-cap file is refused unread, with the file, its size and the cap; the last good state is kept, then recovered", async () => {
    const huge = bigMesh(250_000);
    const size = Buffer.byteLength(huge);
    expect(size).toBeGreaterThan(3 * CAP);
    const from = agent.logs.length;
    atomicWrite(huge);
    const probes = await probeUntil(() => logSince(from, "workload file rejected") !== undefined);
    expect(probes.filter((p) => p.ready !== "200" || p.socks !== "intact")).toEqual([]);
    const line = logSince(from, "workload file rejected")!;
    expect(line["code"]).toBe("CONFIG_FILE_TOO_LARGE");
    expect(String(line["msg"])).toContain(meshFile);
    expect(String(line["msg"])).toContain(`(${size} bytes)`);
    expect(String(line["msg"])).toContain(`cap of 8 MiB (${CAP} bytes)`);
    expect(String(line["msg"])).toContain("LOCAL_XDS_MAX_BYTES");

    const stale = await dump();
    expect(stale.workloads.length).toBe(BIG + 6);
    expect(stale.source).toMatchObject({ state: "stale", lastGood: { workloads: BIG + 6 }, lastError: { code: "CONFIG_FILE_TOO_LARGE" }, reloads: { ok: 1, rejected: 1 } });
    expect(stale.source.lastError?.message).toContain(`(${size} bytes)`);
    const m = await metrics();
    expect(counter(m, "ztunnel_config_stale")).toBe(1);
    expect(counter(m, "ztunnel_config_reloads_total", { result: "rejected" })).toBe(1);
    expect((await echoFlow({ host: HOST, port: 15080 }, `${A}.10`, `${A}.11`, 8080)).ok).toBe(true);

    // Recovery: a good file again; the last error stays on record.
    const back = agent.logs.length;
    atomicWrite(meshYaml(NET));
    await until("reloaded", () => logSince(back, "workload file reloaded"), (l) => l !== undefined, 20_000);
    const d = await dump();
    expect(d.workloads.length).toBe(6);
    expect(d.source).toMatchObject({ state: "current", lastGood: { workloads: 6 }, lastError: { code: "CONFIG_FILE_TOO_LARGE" }, reloads: { ok: 2, rejected: 1 } });
    const after = await metrics();
    expect(counter(after, "ztunnel_config_stale")).toBe(0);
    expect(counter(after, "ztunnel_config_reloads_total", { result: "ok" })).toBe(2);
  }, 90_000);

  test("a broken edit is rejected and counted; undoing it clears the stale flag", async () => {
    const from = agent.logs.length;
    atomicWrite("workloads:\n- {name: broken, workloadIps: [not-an-ip]}\n");
    await until("rejected", () => logSince(from, "workload file rejected"), (l) => l !== undefined, 20_000);
    expect((await dump()).source).toMatchObject({ state: "stale", lastError: { code: "CONFIG_INVALID" }, reloads: { rejected: 2 } });
    atomicWrite(meshYaml(NET));
    await until("no longer stale", async () => (await dump()).source.state, (s) => s === "current", 20_000);
    expect(counter(await metrics(), "ztunnel_config_stale")).toBe(0);
    expect((await dump()).workloads.length).toBe(6);
  });
});

describe("an agent whose node has no workloads", () => {
  test("warns in the log and in /config_dump, suggesting the node name it probably meant", async () => {
    const file = files.write("typo.yaml", meshYaml(NET));
    const typo = await startAgentProcess("node-aa", { ...loopbackEnv(`127.${NET}.2.1`, `${files.dir}/ca`), LOCAL_XDS_PATH: file });
    try {
      const d = JSON.parse((await typo.get("admin", "/config_dump")).body) as Dump;
      expect(d.warnings).toHaveLength(1);
      expect(d.warnings[0]).toContain('NODE_NAME="node-aa" has no workloads');
      expect(d.warnings[0]).toContain('did you mean "node-a"?');
      expect(d.warnings[0]).toContain("node-a, node-b");
      const logged = typo.logs.find((l) => l["level"] === "warn" && String(l["msg"]).includes("has no workloads"));
      expect(logged?.["msg"]).toBe(d.warnings[0]);
      const fixed = meshYaml(NET).replace("services:\n", `- {name: mine, namespace: default, workloadIps: ["127.${NET}.2.50"], node: node-aa}\nservices:\n`);
      writeFileSync(`${file}.tmp`, fixed);
      renameSync(`${file}.tmp`, file);
      await until("warning gone", async () => (JSON.parse((await typo.get("admin", "/config_dump")).body) as Dump).warnings, (w) => w.length === 0, 20_000);
    } finally {
      await typo.stop();
    }
  });
});
