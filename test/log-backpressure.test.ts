import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, httpGet, loopbackEnv, startEcho, ZTUNNEL_BIN } from "@zt/harness";
import type net from "node:net";
import { workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// An agent whose stdout nobody reads (a stuck log collector): logging must not block it.
// With synchronous writes the agent stops at the first full pipe (64 KiB: about a hundred
// access-log lines) and every connection after that hangs. Agent on 127.68.1.x.
const NET = 68;
const HOST = `127.${NET}.1.1`;
const yaml = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["127.${NET}.1.10"], protocol: HBONE, node: node-a}
`;
let agent: ChildProcess;
let echo: net.Server;
const caRoot = mkdtempSync(path.join(tmpdir(), "zt-ca-"));

beforeAll(async () => {
  echo = await startEcho(`127.${NET}.9.9`, 8080);
  const env = { ...loopbackEnv(HOST, path.join(caRoot, "cacerts")), LOCAL_XDS_PATH: workloadDir().write("mesh.yaml", yaml), NODE_NAME: "node-a", LOG_FORMAT: "json", PATH: process.env["PATH"] ?? "" };
  // stdout is a pipe that this test never reads until the end.
  agent = spawn(process.execPath, [ZTUNNEL_BIN, "run"], { env, stdio: ["ignore", "pipe", "inherit"] });
  agent.stdout!.pause();
  await until("ready", () => httpGet(`${HOST}:15021`, "/healthz/ready").catch(() => ({ status: 0, body: "" })), (r) => r.status === 200, 20_000);
});
afterAll(async () => {
  echo?.close();
  if (agent && agent.exitCode === null) {
    agent.stdout!.resume();
    agent.kill("SIGTERM");
    await new Promise((r) => agent.once("exit", r));
  }
  rmSync(caRoot, { recursive: true, force: true });
});

describe("a log reader that does not read", () => {
  test("does not stall the data path or the control ports", async () => {
    // 1500 connections, each one access-log line (~600 bytes): about 14 full pipes.
    for (let round = 0; round < 15; round++) {
      const results = await Promise.all(Array.from({ length: 100 }, () => echoFlow({ host: HOST, port: 15080 }, `127.${NET}.1.10`, `127.${NET}.9.9`, 8080, 256)));
      expect(results.every((r) => r.ok)).toBe(true);
    }
    expect((await httpGet(`${HOST}:15021`, "/healthz/ready")).status).toBe(200);
    expect((await httpGet(`${HOST}:15020`, "/metrics")).status).toBe(200);
    // When the reader comes back, the lines are there (up to 16 MiB wait for it).
    let lines = 0;
    agent.stdout!.on("data", (c: Buffer) => (lines += c.toString().split("\n").length - 1));
    agent.stdout!.resume();
    await until("access lines delivered", () => lines, (n) => n >= 1500, 15_000);
  });
});
