import http from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loopbackEnv, startAgentProcess, type AgentProcess } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";

// The admin port of a real agent (127.50.2.1:15000) against requests a web page could send.
const HOST = "127.50.2.1";
const files = workloadDir();
let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgentProcess("node-a", { ...loopbackEnv(HOST, `${files.dir}/ca`), LOCAL_XDS_PATH: files.write("mesh.yaml", meshYaml(50)) });
});

afterAll(async () => {
  await agent?.stop();
});

function admin(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: 15000, method, path, headers, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const level = async (): Promise<string> => (await admin("GET", "/logging")).body;

describe("admin writes from a web page are refused", () => {
  test("POST /quitquitquit and POST /logging with a foreign Host, Origin or Sec-Fetch-Site get 403 and change nothing", async () => {
    const before = await level();
    const foreign: Record<string, string>[] = [
      { host: "attacker.example" },
      { host: "rebind.attacker.example:15000" },
      { origin: "http://attacker.example" },
      { origin: "null" },
      { origin: "http://localhost:3000" },
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site" },
    ];
    for (const headers of foreign) {
      const q = await admin("POST", "/quitquitquit", headers);
      expect(q.status, JSON.stringify(headers)).toBe(403);
      expect(q.body).toMatch(/^forbidden: /);
      expect((await admin("POST", "/logging?level=debug", headers)).status).toBe(403);
    }
    expect(await level()).toBe(before);
    expect(agent.proc.exitCode).toBeNull();
    expect((await agent.get("readiness", "/healthz/ready")).status).toBe(200);
    const refusals = agent.logs.filter((l) => String(l["msg"]).startsWith("admin request refused"));
    expect(refusals.length).toBe(2 * foreign.length);
  });

  test("GET /config_dump under a foreign Host (DNS rebinding) is refused; local names are served", async () => {
    const r = await admin("GET", "/config_dump", { host: "rebind.attacker.example:15000" });
    expect(r.status).toBe(403);
    expect(r.body).toContain('Host "rebind.attacker.example:15000"');
    expect(r.body).not.toContain("workloads");
    for (const host of [`${HOST}:15000`, HOST, "localhost:15000", "LOCALHOST", "127.0.0.1:8080", "[::1]:15000"]) {
      expect((await admin("GET", "/config_dump", { host })).status, host).toBe(200);
    }
  });

  test("same-origin writes and curl-style writes still work; the agent stops on a local POST /quitquitquit", async () => {
    const same = await admin("POST", "/logging?level=debug", { host: `localhost:15000`, origin: "http://localhost:15000", "sec-fetch-site": "same-origin" });
    expect(same).toEqual({ status: 200, body: "current log level is debug\n" });
    expect((await admin("POST", "/logging?level=info")).status).toBe(200);
    expect((await admin("POST", "/quitquitquit", { host: `${HOST}:15000` })).status).toBe(200);
    expect(await agent.exited).toBe(0);
  });
});
