import net from "node:net";
import { afterAll, describe, expect, test } from "vitest";
import { loopbackEnv, startAgentProcess, type AgentProcess } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// INBOUND_ADDR=workloads:15008 when binds fail: readiness says which and why, through real agents on 127.53.x.
const files = workloadDir();
const agents: AgentProcess[] = [];
const blockers: net.Server[] = [];

afterAll(async () => {
  for (const b of blockers) b.close();
  await Promise.all(agents.map((a) => a.stop()));
});

async function block(ip: string): Promise<net.Server> {
  const s = net.createServer((c) => c.destroy());
  await new Promise<void>((resolve) => s.listen(15008, ip, () => resolve()));
  blockers.push(s);
  return s;
}

async function start(host: string, yaml: string): Promise<AgentProcess> {
  const a = await startAgentProcess("node-a", { ...loopbackEnv(host, `${files.dir}/ca`), LOCAL_XDS_PATH: files.write(`${host}.yaml`, yaml) }, { waitFor: "answering" });
  agents.push(a);
  return a;
}

describe("INBOUND_ADDR=workloads: bind failures", () => {
  test("when every workload listener fails, the agent is not ready, names each address and why; it binds and turns ready once they are free", async () => {
    const held = [await block("127.53.1.10"), await block("127.53.1.11")];
    const agent = await start("127.53.1.1", meshYaml(53));
    const r = await until("readiness answers 503", () => agent.get("readiness", "/healthz/ready"), (x) => x.status === 503);
    for (const ip of ["127.53.1.10", "127.53.1.11"]) {
      expect(r.body).toContain(`HBONE inbound ${ip}:15008 not bound: address already in use`);
    }
    const logged = agent.logs.filter((l) => String(l["msg"]).startsWith("cannot bind HBONE inbound"));
    expect(logged.map((l) => l["code"])).toEqual(["EADDRINUSE", "EADDRINUSE"]);
    expect(logged.map((l) => String(l["msg"])).join("\n")).not.toContain("is the workload IP an address of this host");

    for (const s of held) s.close();
    await until("ready once the addresses are free", () => agent.get("readiness", "/healthz/ready"), (x) => x.status === 200, 15_000);
    await until("the late bind logged", () => agent.logs.some((l) => String(l["msg"]).includes("bound after all")), (v) => v);
  });

  test("a workload IP this host does not have is named with the right hint", async () => {
    // 198.51.100.7 (TEST-NET-2) is not on this host: the bind fails with EADDRNOTAVAIL; nothing is sent to it.
    const yaml = meshYaml(53).replace('workloadIps: ["127.53.1.11"]', 'workloadIps: ["198.51.100.7"]').replace(/127\.53\./g, "127.54.");
    const agent = await start("127.54.1.1", yaml);
    const r = await until("readiness answers 503", () => agent.get("readiness", "/healthz/ready"), (x) => x.status === 503);
    expect(r.body).toContain("HBONE inbound 198.51.100.7:15008 not bound: address not available");
    expect(r.body).toContain("the workload file puts default/local-echo (198.51.100.7) on NODE_NAME=node-a, but this host does not have that address");
    expect(r.body).not.toContain("127.54.1.10");
  });
});
