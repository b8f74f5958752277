import { renameSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loopbackEnv, socksConnect, startAgentProcess, startEcho, type AgentProcess } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// A change of policies acts on live connections, as Istio's ztunnel does: a real agent on
// 127.96.1.1, two connections from sleep to local-echo (through the agent's own HBONE
// inbound); a new DENY policy for one port resets that one at both ends, with a line
// naming the policy, and leaves the other alone.
const NET = 96;
const A = `127.${NET}.1`;
const HOST = `${A}.1`;
const files = workloadDir();
const meshFile = files.write("mesh.yaml", meshYaml(NET));
let agent: AgentProcess;
const echoes: net.Server[] = [];

beforeAll(async () => {
  agent = await startAgentProcess("node-a", { ...loopbackEnv(HOST, `${files.dir}/ca`), LOCAL_XDS_PATH: meshFile });
  for (const port of [8080, 8081]) echoes.push(await startEcho(`${A}.11`, port));
}, 60_000);

afterAll(async () => {
  for (const e of echoes) e.close();
  await agent?.stop();
});

/** A connection from sleep to local-echo:port that has echoed once. */
async function open(port: number): Promise<{ sock: net.Socket; ended: Promise<string>; echo: (s: string) => Promise<string> }> {
  const sock = await socksConnect({ proxy: { host: HOST, port: 15080 }, localAddress: `${A}.10`, host: `${A}.11`, port });
  let got = "";
  const waiters: (() => void)[] = [];
  sock.on("data", (d: Buffer) => {
    got += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const ended = new Promise<string>((resolve) => {
    sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    sock.once("close", () => resolve("closed"));
  });
  sock.resume();
  const echo = async (s: string): Promise<string> => {
    const before = got.length;
    sock.write(s);
    await until(`echo of ${s}`, () => got.length - before, (n) => n >= s.length);
    return got.slice(before);
  };
  expect(await echo("hello")).toBe("hello");
  return { sock, ended, echo };
}

describe("a change of policies and live connections", () => {
  test("a connection the new policies deny is reset at both ends and logged with the policy; the allowed one goes on", async () => {
    const kept = await open(8080);
    const denied = await open(8081);
    const t0 = Date.now();
    const tmp = `${meshFile}.tmp`;
    writeFileSync(tmp, meshYaml(NET, "- {name: deny-8081, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [8081]}]]]}\n"));
    renameSync(tmp, meshFile);
    // Reset, not a clean close: the source must not take a cut connection for a complete one.
    expect(await denied.ended).toBe("ECONNRESET");
    const line = await until(
      "the inbound line of the denied connection",
      () => agent.accessLogs().find((l) => l["direction"] === "inbound" && String(l["dst.addr"]) === `${A}.11:8081` && Date.parse(String(l["time"])) >= t0),
      (l) => l !== undefined,
      10_000,
    );
    expect(line).toMatchObject({ "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", response_flags: "DENY" });
    expect(String(line!["error"])).toMatch(/^AUTHZ_DENIED: connection closed: the policies changed and now deny it \(default\/deny-8081, denied-by-policy\)/);
    expect(counter((await agent.get("stats", "/metrics")).body, "istio_tcp_connections_failed_total", { reporter: "destination", response_flags: "DENY" })).toBeGreaterThanOrEqual(1);
    // The allowed one is untouched.
    expect(await kept.echo("still here")).toBe("still here");
    kept.sock.destroy();
  }, 30_000);
});
