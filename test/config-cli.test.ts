import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parse } from "yaml";
import { httpGet, startLoopbackMesh, ZTUNNEL_BIN, type LoopbackMesh } from "@zt/harness";

// `ztunnel config <view>` against a real agent (the embedded mesh, node-a): each view as a
// table, and parsed back from -o json and -o yaml; the filters; an agent that cannot be asked.
const NET = 95;
let mesh: LoopbackMesh;
const run = promisify(execFile);
const admin = (): string => `${mesh.host(0)}:15000`;

async function config(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [ZTUNNEL_BIN, "config", ...args], { timeout: 20_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
const json = async <T>(...args: string[]): Promise<T> => {
  const r = await config(...args, "--admin", admin(), "-o", "json");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as T;
};

beforeAll(async () => {
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a"] });
}, 60_000);
afterAll(async () => {
  await mesh?.stop();
});

describe("ztunnel config", () => {
  test("workloads: every workload of the mesh with its address, node, protocol and identity; --workload-node and --namespace filter", async () => {
    const all = await json<{ name: string; namespace: string; address: string; node: string; protocol: string; identity: string }[]>("workloads");
    expect(all.map((w) => w.name).sort()).toEqual(["echo-a", "echo-b", "legacy-b", "sleep-a"]);
    expect(all.find((w) => w.name === "legacy-b")?.protocol).toBe("TCP");
    expect(all.find((w) => w.name === "sleep-a")).toMatchObject({ namespace: "default", address: "127.0.1.10", node: "node-a", protocol: "HBONE", identity: "spiffe://cluster.local/ns/default/sa/sleep" });
    expect((await json<{ name: string }[]>("workloads", "--workload-node", "node-b")).map((w) => w.name).sort()).toEqual(["echo-b", "legacy-b"]);
    expect(await json<unknown[]>("workloads", "--namespace", "nowhere")).toEqual([]);
    const table = await config("workloads", "--admin", admin());
    expect(table.stdout.split("\n")[0]).toMatch(/^NAMESPACE\s+NAME\s+ADDRESS\s+NODE\s+PROTOCOL\s+STATUS\s+IDENTITY$/);
    expect(table.stdout).toMatch(/default\s+sleep-a\s+127\.0\.1\.10\s+node-a\s+HBONE\s+Healthy\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  });

  test("services: VIPs, ports and endpoints (healthy ones counted apart), endpoints filtered by --workload-node", async () => {
    const svcs = await json<{ hostname: string; vips: string; ports: string; endpoints: number; healthy: number }[]>("services");
    expect(svcs).toEqual([expect.objectContaining({ hostname: "echo.default.svc.cluster.local", vips: "127.0.3.1", ports: "80->8080", endpoints: 2, healthy: 2 })]);
    expect((await json<{ endpoints: number }[]>("services", "--workload-node", "node-a"))[0]!.endpoints).toBe(1);
  });

  test("/config_dump lists, per workload, the policies that apply to it", async () => {
    const d = JSON.parse((await httpGet(admin(), "/config_dump")).body) as { workloads: { name: string; policies: string[] }[] };
    expect(Object.fromEntries(d.workloads.map((w) => [w.name, w.policies]))).toEqual({ "sleep-a": ["default/deny-9999"], "echo-a": ["default/deny-9999"], "echo-b": ["default/deny-9999"], "legacy-b": [] });
  });

  test("policies and certificates: state, serial, validity and time to rotation of this node's certificates", async () => {
    expect(await json<unknown[]>("policies")).toEqual([{ namespace: "default", name: "deny-9999", scope: "Namespace", action: "Deny", dryRun: false, rules: 1 }]);
    const certs = await json<{ identity: string; status: string; serial: string; notBefore: string; notAfter: string; rotatesIn: string }[]>("certificates");
    expect(certs.map((c) => c.identity).sort()).toEqual(["spiffe://cluster.local/ns/default/sa/echo", "spiffe://cluster.local/ns/default/sa/sleep"]);
    for (const c of certs) {
      expect(c.status).toBe("available");
      expect(c.serial).toMatch(/^\d+$/);
      expect(Date.parse(c.notAfter)).toBeGreaterThan(Date.parse(c.notBefore));
      expect(c.rotatesIn).toMatch(/^\d+(d|h) \d+(h|m)$/);
    }
    const table = await config("certificates", "--admin", admin());
    expect(table.stdout.split("\n")[0]).toMatch(/^IDENTITY\s+STATUS\s+SERIAL\s+NOT BEFORE\s+NOT AFTER\s+ROTATES IN\s+ERROR$/);
  });

  test("all, as YAML: every view, the same rows as each alone", async () => {
    const r = await config("all", "--admin", admin(), "-o", "yaml");
    expect(r.code).toBe(0);
    const all = parse(r.stdout) as Record<string, unknown[]>;
    expect(Object.keys(all)).toEqual(["workloads", "services", "policies", "certificates"]);
    expect(all["workloads"]).toEqual(await json("workloads"));
    expect(all["policies"]).toEqual(await json("policies"));
    const table = await config("all", "--admin", admin());
    for (const title of ["WORKLOADS", "SERVICES", "POLICIES", "CERTIFICATES"]) expect(table.stdout).toContain(`${title}\n`);
  });

  test("an agent that cannot be asked, another node's agent, and a bad view: clear errors, exit 1 or 2", async () => {
    const down = await config("workloads", "--admin", "127.0.0.1:1");
    expect([down.code, down.stderr.trim()]).toEqual([1, "ztunnel config: cannot reach the agent's admin port at 127.0.0.1:1 (ECONNREFUSED); is the agent running there? --admin host:port points elsewhere"]);
    const other = await config("workloads", "--admin", admin(), "--node", "node-b");
    expect([other.code, other.stderr.trim()]).toEqual([1, `ztunnel config: the agent at ${admin()} serves node "node-a", not "node-b"`]);
    const bad = await config("pods");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Allowed choices are workloads, services, policies, certificates, all");
  });
});
