import { execFile } from "node:child_process";
import { promisify } from "node:util";
import net from "node:net";
import { describe, expect, test } from "vitest";
import { loopbackEnv, socksConnect, startAgentProcess, startEcho, ZTUNNEL_BIN } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

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
  test("certificates rotate at half-life while a live connection keeps flowing", async () => {
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
      expect(agent.logs.some((l) => l["msg"] === "certificate rotated")).toBe(true);
    } finally {
      echo.close();
      await agent.stop();
    }
  });
});
