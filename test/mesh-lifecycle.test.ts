import { writeFileSync } from "node:fs";
import type net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, socksConnect, startEcho, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { fdCount, settlesTo } from "./support/fds.js";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// Two agents on 127.12.x.y under REGISTRY_ONLY: refusals, hot reload, identity checks, leaks, drain.
const NET = 12;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const files = workloadDir();
const meshFile = files.write("mesh.yaml", meshYaml(NET));
let mesh: LoopbackMesh;
const servers: net.Server[] = [];
const socks = (): { host: string; port: number } => ({ host: mesh.host(0), port: 15080 });

beforeAll(async () => {
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], workloadsFile: meshFile, env: { OUTBOUND_TRAFFIC_POLICY: "REGISTRY_ONLY", DRAIN_TIMEOUT: "3s" } });
  for (const ip of [`${B}.10`, `${B}.30`, `127.${NET}.9.9`]) servers.push(await startEcho(ip, 8080));
});

afterAll(async () => {
  for (const s of servers) s.close();
  await mesh?.stop();
});

describe("REGISTRY_ONLY", () => {
  test("an unknown destination is refused, logged and counted; known ones still work", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `127.${NET}.9.9`, 8080);
    expect(r.detail).toBe("refused (SOCKS reply 2)");
    const line = await until("log", () => mesh.agents[0]!.accessLogs().find((l) => String(l["error"]).startsWith("REGISTRY_ONLY")), (l) => l !== undefined);
    expect(line["response_flags"]).toBe("NO_ROUTE");
    expect((await echoFlow(socks(), `${A}.10`, `127.${NET}.3.1`, 80)).ok).toBe(true);
  });
});

describe("hot reload of the workload file", () => {
  test("a workload added to the file becomes reachable; a broken file keeps the last good state", async () => {
    expect((await echoFlow(socks(), `${A}.10`, `${B}.30`, 8080)).detail).toBe("refused (SOCKS reply 2)");
    const added = `- {name: late, namespace: default, serviceAccount: late, workloadIps: ["${B}.30"], protocol: HBONE, node: node-b}\n`;
    writeFileSync(meshFile, meshYaml(NET).replace("services:\n", `${added}services:\n`));
    const r = await until("new workload reachable", () => echoFlow(socks(), `${A}.10`, `${B}.30`, 8080), (x) => x.ok, 10_000);
    expect(r.ok).toBe(true);
    const seen = await until("inbound log", () => mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === r.srcAddr), (l) => l !== undefined);
    expect(seen["dst.identity"]).toBe("spiffe://cluster.local/ns/default/sa/late");

    writeFileSync(meshFile, "workloads:\n- {name: broken, workloadIps: [not-an-ip]}\n");
    const err = await until("reload error", () => mesh.agents[0]!.logs.find((l) => String(l["msg"]).includes("workload file rejected")), (l) => l !== undefined, 10_000);
    expect(String(err["msg"])).toContain(meshFile);
    expect(String(err["msg"])).toContain("workloads[0]");
    const dump = JSON.parse((await mesh.agents[0]!.get("admin", "/config_dump")).body) as { workloads: { name: string }[] };
    expect(dump.workloads.map((w) => w.name)).toContain("late");
    expect((await echoFlow(socks(), `${A}.10`, `${B}.30`, 8080)).ok).toBe(true);
    writeFileSync(meshFile, meshYaml(NET));
  });
});

describe("no leaks", () => {
  test("a batch of connections leaves both agents with the descriptors they started with", async () => {
    expect((await echoFlow(socks(), `${A}.10`, `${B}.10`, 8080)).ok).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    const [pa, pb] = [mesh.agents[0]!.proc.pid!, mesh.agents[1]!.proc.pid!];
    const before = [fdCount(pa), fdCount(pb)];
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => echoFlow(socks(), `${A}.10`, i % 2 ? `${B}.10` : `127.${NET}.3.1`, i % 2 ? 8080 : 80, 4096)));
    expect(results.every((r) => r.ok)).toBe(true);
    await Promise.all(Array.from({ length: 20 }, () => echoFlow(socks(), `${A}.10`, `${B}.10`, 9999)));
    expect(await settlesTo(pa, before[0]!)).toBeLessThanOrEqual(before[0]!);
    expect(await settlesTo(pb, before[1]!)).toBeLessThanOrEqual(before[1]!);
  });
});

describe("identity", () => {
  test("a peer presenting another identity than expected is refused before anything is sent", async () => {
    // node-a believes 127.13.2.10 runs as sa/db; node-b (the truth) presents sa/echo.
    const aView = meshYaml(13).replace('serviceAccount: echo\n  workloadIps: ["127.13.2.10"]', 'serviceAccount: db\n  workloadIps: ["127.13.2.10"]');
    expect(aView).not.toBe(meshYaml(13));
    const m2 = await startLoopbackMesh({ net: 13, nodes: ["node-a", "node-b"], workloadsFiles: [files.write("a13.yaml", aView), files.write("b13.yaml", meshYaml(13))] });
    const echo = await startEcho("127.13.2.10", 8080);
    try {
      const r = await echoFlow({ host: m2.host(0), port: 15080 }, "127.13.1.10", "127.13.2.10", 8080);
      expect(r.ok).toBe(false);
      const line = await until("identity log", () => m2.agents[0]!.accessLogs().find((l) => l["response_flags"] === "IDENTITY_ERROR"), (l) => l !== undefined);
      expect(String(line["error"])).toContain("spiffe://cluster.local/ns/default/sa/db");
      expect(m2.agents[1]!.accessLogs()).toHaveLength(0);
    } finally {
      echo.close();
      await m2.stop();
    }
  });
});

describe("drain on SIGTERM", () => {
  test("stops accepting, lets a live connection finish, then exits 0", async () => {
    const sock = await socksConnect({ proxy: socks(), localAddress: `${A}.10`, host: `${B}.10`, port: 8080 });
    sock.resume();
    const a = mesh.agents[0]!;
    a.proc.kill("SIGTERM");
    await until("draining log", () => a.logs.find((l) => l["msg"] === "draining"), (l) => l !== undefined);
    const refused = await socksConnect({ proxy: socks(), localAddress: `${A}.10`, host: `${B}.10`, port: 8080 }).then(() => "accepted", (e: NodeJS.ErrnoException) => e.code ?? e.message);
    expect(refused).toBe("ECONNREFUSED");
    let echoed = 0;
    sock.on("data", (c: Buffer) => (echoed += c.length));
    const ended = new Promise<void>((r) => sock.once("end", () => r()));
    sock.end(Buffer.alloc(50_000, 1));
    await ended;
    expect(echoed).toBe(50_000);
    expect(await a.exited).toBe(0);
    expect(a.logs.some((l) => l["msg"] === "ztunnel stopped")).toBe(true);
  });
});
