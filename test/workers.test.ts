import type net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, httpGet, startEcho, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// Data-path workers (ZTUNNEL_WORKER_THREADS): two agents of 2 workers on 127.83.x.y. The
// kernel spreads connections over the workers' SO_REUSEPORT listeners; /metrics and
// /config_dump add up what every worker carried; a worker that dies is replaced while the
// other keeps serving. ZT_TEST_WORKER_EXIT_AFTER is a fault for tests: each first worker of
// an agent exits as it takes that many proxied connections (their replacements do not).
const NET = 83;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
let mesh: LoopbackMesh;
const servers: net.Server[] = [];
const socks = (): { host: string; port: number } => ({ host: mesh.host(0), port: 15080 });
const dump = async (i: number): Promise<any> => JSON.parse((await httpGet(`${mesh.host(i)}:15000`, "/config_dump")).body);
const metrics = async (i: number): Promise<string> => (await httpGet(`${mesh.host(i)}:15020`, "/metrics")).body;

beforeAll(async () => {
  const files = workloadDir();
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], workloadsFile: files.write("mesh.yaml", meshYaml(NET)), env: { ZTUNNEL_WORKER_THREADS: "2" } });
  servers.push(await startEcho(`${B}.10`, 8080));
});

afterAll(async () => {
  for (const s of servers) s.close();
  await mesh?.stop();
});

describe("data-path workers", () => {
  test("connections are spread over the workers; the metrics and the dump add up what each carried", async () => {
    const before = counter(await metrics(1), "istio_tcp_connections_opened_total", { reporter: "destination" });
    const flows = [];
    for (let i = 0; i < 24; i++) flows.push(echoFlow(socks(), `${A}.10`, `${B}.10`, 8080, 10_000));
    const results = await Promise.all(flows);
    expect(results.every((r) => r.ok)).toBe(true);
    // One access-log line per connection, whichever worker carried it.
    for (const r of results) await until(`node-b's line for ${r.srcAddr}`, () => mesh.agents[1]!.accessLogs().filter((l) => l["src.addr"] === r.srcAddr).length, (n) => n === 1);
    const opened = await until("24 opened", async () => counter(await metrics(1), "istio_tcp_connections_opened_total", { reporter: "destination" }) - before, (n) => n === 24);
    expect(opened).toBe(24);
    const d = await dump(0);
    expect(d.config.workerThreads).toBe(2);
    expect(d.dataPath.workers).toHaveLength(2);
    // Each SOCKS5 connection lands on one of node-a's workers (by the kernel's hash of its addresses): both took some.
    const lines = await until("node-a's 24 lines", () => mesh.agents[0]!.accessLogs().filter((l) => results.some((r) => r.srcAddr === l["src.addr"])), (ls) => ls.length === 24);
    expect(new Set(lines.map((l) => l["worker"])).size).toBe(2);
  });

});

describe("a data-path worker that dies", () => {
  let faulty: LoopbackMesh;
  beforeAll(async () => {
    const files = workloadDir();
    faulty = await startLoopbackMesh({ net: NET + 1, nodes: ["node-a", "node-b"], workloadsFile: files.write("mesh.yaml", meshYaml(NET + 1)), env: { ZTUNNEL_WORKER_THREADS: "2" }, envs: [undefined, { ZT_TEST_WORKER_EXIT_AFTER: "3" }] });
    servers.push(await startEcho(`127.${NET + 1}.2.10`, 8080));
  });
  afterAll(async () => {
    await faulty?.stop();
  });

  test("is logged and replaced; its connections are counted as lost; the agent serves on and stays ready", async () => {
    const flow = (): ReturnType<typeof echoFlow> => echoFlow({ host: faulty.host(0), port: 15080 }, `127.${NET + 1}.1.10`, `127.${NET + 1}.2.10`, 8080, 10_000);
    // Each of node-b's workers dies at its third connection: five flows make at least one die.
    const death = (): Record<string, unknown> | undefined => faulty.agents[1]!.logs.find((l) => l["code"] === "WORKER_DIED");
    for (let i = 0; i < 20 && !death(); i++) await flow();
    const died = await until("a death logged", death, (l) => l !== undefined, 10_000);
    expect(String(died!["msg"])).toMatch(/^data-path worker \d died \(exit code 70\) holding \d+ connection\(s\); starting a new one$/);
    await until("replaced", () => faulty.agents[1]!.logs.some((l) => /^data-path worker \d replaced$/.test(String(l["msg"]))), (x) => x, 10_000);
    const m = (await httpGet(`${faulty.host(1)}:15020`, "/metrics")).body;
    expect(counter(m, "ztunnel_worker_deaths_total")).toBeGreaterThanOrEqual(1);
    expect(counter(m, "ztunnel_worker_lost_connections_total")).toBeGreaterThanOrEqual(1);
    // node-a's pool reconnects (to the other worker, or the new one): the flows after it succeed.
    for (let i = 0; i < 6; i++) expect(await until("a flow", flow, (r) => r.ok, 10_000)).toMatchObject({ ok: true });
    expect(await httpGet(`${faulty.host(1)}:15021`, "/healthz/ready")).toMatchObject({ status: 200, body: "ready\n" });
  });
});
