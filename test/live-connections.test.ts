import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parse } from "yaml";
import { httpGet, loopbackEnv, startAgentProcess, ZTUNNEL_BIN, type AgentProcess } from "@zt/harness";
import { openEcho, type EchoConnection } from "./support/echo-conn.js";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// A real agent on 127.97.1.1 lists its live connections: GET /debug/connections, and
// `ztunnel config connections` (table, -o json, -o yaml, filters); GET /debug/status has its
// health. One connection from sleep to local-echo (through the agent's own HBONE inbound) is
// two rows: the outbound one (SOCKS5 → HBONE) and the inbound one (15008 → the workload).
const NET = 97;
const A = `127.${NET}.1`;
const HOST = `${A}.1`;
const ADMIN = `${HOST}:15000`;
const SLEEP = "spiffe://cluster.local/ns/default/sa/sleep";
const ECHO = "spiffe://cluster.local/ns/default/sa/echo";
const files = workloadDir();
const meshFile = files.write("mesh.yaml", meshYaml(NET));
let agent: AgentProcess;
let echo: net.Server;
/** Echo sockets; each keeps its side open after the client's FIN until the test ends it. */
const served: net.Socket[] = [];
const run = promisify(execFile);

interface Peer {
  addr: string;
  workload: string | null;
  namespace: string | null;
  identity: string | null;
}
interface Listed {
  worker: number;
  direction: string;
  listener: string;
  state: string;
  src: Peer;
  dst: Peer & { service: string | null; hboneAddr: string | null };
  security: string;
  bytesSent: number;
  bytesRecv: number;
  startTime: string;
  ageMs: number;
}
interface Listing {
  node: string;
  connections: Listed[];
  count: number;
  truncated: boolean;
  held: number;
  unanswered: number[];
}

async function config(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [ZTUNNEL_BIN, "config", "connections", "--admin", ADMIN, ...args], { timeout: 20_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
const listing = async (q = ""): Promise<Listing> => {
  const r = await httpGet(ADMIN, `/debug/connections${q}`);
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as Listing;
};
/** The rows of the client whose local port is `port`. */
const rowsOf = (l: Listing, port: number): Listed[] => l.connections.filter((c) => c.src.addr === `${A}.10:${port}`);

beforeAll(async () => {
  agent = await startAgentProcess("node-a", { ...loopbackEnv(HOST, `${files.dir}/ca`), LOCAL_XDS_PATH: meshFile });
  echo = net.createServer({ allowHalfOpen: true }, (s) => {
    served.push(s);
    s.on("error", () => {});
    s.on("data", (d: Buffer) => s.write(d));
  });
  await new Promise<void>((r) => echo.listen(8080, `${A}.11`, () => r()));
}, 60_000);

afterAll(async () => {
  for (const s of served) s.destroy();
  echo?.close();
  await agent?.stop();
});

/** A connection from sleep to local-echo:8080 that has echoed `hello`. */
const open = (): Promise<EchoConnection> => openEcho({ host: HOST, port: 15080 }, `${A}.10`, { host: `${A}.11`, port: 8080 });

describe("live connections", () => {
  test("GET /debug/connections: both rows of a connection, with workloads, identities, HBONE peer, bytes, age and state; half-closed, then gone", async () => {
    const c = await open();
    const before = Date.now();
    const rows = rowsOf(await listing(), c.port);
    const out = rows.find((r) => r.direction === "outbound");
    const inb = rows.find((r) => r.direction === "inbound");
    expect(rows).toHaveLength(2);
    expect(out).toMatchObject({
      listener: "socks5",
      state: "open",
      src: { workload: "sleep", namespace: "default", identity: SLEEP },
      dst: { addr: `${A}.11:8080`, workload: "local-echo", namespace: "default", identity: ECHO, service: null, hboneAddr: `${A}.11:15008` },
      security: "mutual_tls",
      bytesSent: 5,
      bytesRecv: 5,
    });
    expect(inb).toMatchObject({ listener: "hbone", state: "open", src: { identity: SLEEP, workload: "sleep" }, dst: { addr: `${A}.11:8080`, workload: "local-echo", identity: ECHO }, bytesSent: 5, bytesRecv: 5 });
    expect(Date.parse(out!.startTime)).toBeLessThanOrEqual(before);
    expect(out!.ageMs).toBeGreaterThanOrEqual(0);

    await c.echo("more bytes");
    expect(rowsOf(await listing(), c.port).map((r) => [r.direction, r.bytesSent, r.bytesRecv]).sort()).toEqual([
      ["inbound", 15, 15],
      ["outbound", 15, 15],
    ]);
    // The client's FIN ends one direction; the echo keeps its side open.
    c.sock.end();
    await until("half-closed on both rows", async () => rowsOf(await listing(), c.port).map((r) => r.state), (s) => s.length === 2 && s.every((x) => x === "half-closed"));
    served.at(-1)!.end();
    await until("both rows gone", async () => rowsOf(await listing(), c.port).length, (n) => n === 0);
  });

  test("filters and limit: direction, namespace of either side, limit with truncated", async () => {
    const [a, b] = [await open(), await open()];
    const all = await listing();
    expect(all.node).toBe("node-a");
    expect(all.held).toBeGreaterThanOrEqual(4);
    expect((await listing("?direction=inbound")).connections.every((r) => r.direction === "inbound")).toBe(true);
    expect(rowsOf(await listing("?direction=outbound"), a.port).map((r) => r.direction)).toEqual(["outbound"]);
    expect((await listing("?namespace=nowhere")).connections).toEqual([]);
    expect(rowsOf(await listing("?namespace=default"), b.port)).toHaveLength(2);
    expect(await listing("?limit=1")).toMatchObject({ count: 1, truncated: true });
    const bad = await httpGet(ADMIN, "/debug/connections?limit=-1");
    expect([bad.status, bad.body]).toEqual([400, 'CONNECTIONS_QUERY_INVALID: invalid limit "-1": expected a whole number from 1 to 100000 (default 10000)\n']);
    a.sock.destroy();
    b.sock.destroy();
  });

  test("ztunnel config connections: a table, -o json and -o yaml parsed back, --namespace, --direction, --limit, --node", async () => {
    const c = await open();
    const table = await config();
    expect(table.code).toBe(0);
    const lines = table.stdout.split("\n");
    expect(lines[0]).toMatch(/^DIRECTION\s+SOURCE\s+DESTINATION\s+SERVICE\s+SRC IDENTITY\s+DST IDENTITY\s+SENT\s+RECV\s+AGE\s+STATE$/);
    const mine = lines.find((l) => l.startsWith("outbound") && l.includes(`${A}.10:${c.port} (default/sleep)`));
    expect(mine).toMatch(new RegExp(`^outbound\\s+${A.replace(/\./g, "\\.")}\\.10:${c.port} \\(default/sleep\\)\\s+${A.replace(/\./g, "\\.")}\\.11:8080 \\(default/local-echo\\)\\s+-\\s+${SLEEP}\\s+${ECHO}\\s+5 B\\s+5 B\\s+\\d+s\\s+open$`));

    const json = await config("-o", "json");
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as Listed[];
    expect(parsed.filter((r) => r.src.addr === `${A}.10:${c.port}`).map((r) => r.direction).sort()).toEqual(["inbound", "outbound"]);
    const yaml = await config("-o", "yaml", "--direction", "outbound");
    const fromYaml = parse(yaml.stdout) as Listed[];
    expect(fromYaml.find((r) => r.src.addr === `${A}.10:${c.port}`)).toMatchObject({ direction: "outbound", dst: { identity: ECHO }, bytesSent: 5 });
    expect(fromYaml.every((r) => r.direction === "outbound")).toBe(true);

    expect(JSON.parse((await config("-o", "json", "--namespace", "nowhere")).stdout)).toEqual([]);
    expect((await config("--namespace", "nowhere")).stdout).toBe("(none)\n");
    const one = await config("-o", "json", "--limit", "1");
    expect([one.code, (JSON.parse(one.stdout) as unknown[]).length]).toEqual([0, 1]);
    // This connection is listed twice (outbound and inbound, on either worker): held counts them all.
    const held = /^ztunnel config: only the first 1 connections are shown \(the agent holds (\d+) in all\); raise --limit to see more\n$/.exec(one.stderr);
    expect(Number(held?.[1])).toBeGreaterThanOrEqual(2);

    const other = await config("--node", "node-b");
    expect([other.code, other.stderr.trim()]).toEqual([1, `ztunnel config: the agent at ${ADMIN} serves node "node-a", not "node-b"`]);
    const wrong = await config("--workload-node", "node-a");
    expect([wrong.code, wrong.stderr.trim()]).toEqual([2, "ztunnel config: --workload-node does not apply to connections: an agent holds only its own node's (use --node to check which node that is)"]);
    const badLimit = await config("--limit", "0");
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toContain("expected a whole number from 1 to 100000");
    const notHere = await run(process.execPath, [ZTUNNEL_BIN, "config", "workloads", "--admin", ADMIN, "--limit", "5"]).catch((e: { code: number; stderr: string }) => e);
    expect([(notHere as { code: number }).code, (notHere as { stderr: string }).stderr.trim()]).toEqual([2, "ztunnel config: --limit applies to the connections view only"]);
    c.sock.destroy();
  });

  test("GET /debug/status: ready, the workload file, this node's certificates with their expiry, capture, the HBONE pool per peer", async () => {
    const c = await open();
    const r = await httpGet(ADMIN, "/debug/status");
    expect(r.status).toBe(200);
    const s = JSON.parse(r.body) as {
      node: string;
      ready: boolean;
      pending: string[];
      draining: boolean;
      source: { kind: string; state: string; pending: string[] };
      certificates: { identity: string; status: string; expiresAt: string; rotatesAt: string }[];
      capture: { mode: string };
      pool: { connections: number; peers: Record<string, { connections: number; streams: number }> };
      connections: { live: number; workers: { worker: number; live: number }[] };
    };
    expect(s).toMatchObject({ node: "node-a", ready: true, pending: [], draining: false, source: { kind: "file", state: "current", pending: [] }, capture: { mode: "none" } });
    expect(s.certificates.map((x) => x.identity).sort()).toEqual([ECHO, SLEEP]);
    for (const cert of s.certificates) {
      expect(cert.status).toBe("available");
      expect(Date.parse(cert.expiresAt)).toBeGreaterThan(Date.now());
      expect(Date.parse(cert.rotatesAt)).toBeLessThan(Date.parse(cert.expiresAt));
    }
    expect(s.pool.peers[`${A}.11:15008`]?.connections).toBeGreaterThanOrEqual(1);
    expect(s.pool.peers[`${A}.11:15008`]?.streams).toBeGreaterThanOrEqual(1);
    expect(s.connections.live).toBeGreaterThanOrEqual(2);
    expect(s.connections.workers.length).toBe(Number(process.env["ZTUNNEL_WORKER_THREADS"] ?? 2));
    c.sock.destroy();
  });
});
