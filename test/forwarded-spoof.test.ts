import type net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startEcho, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { createCertManager, loadOrCreateCa, type CertManager } from "@zt/identity";
import { h2Over, request, tlsTo } from "./support/hbone-client.js";
import { workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// `sourceIps` policies on 15008 see one verified source address: the `forwarded` one only
// when it belongs to the identity the peer's certificate proved, else the peer's own TCP
// address. A mesh identity that forges `forwarded` can neither satisfy an ALLOW nor dodge
// a DENY, and is not credited as the workload it named. One agent, node-b, on 127.61.x.y.
const NET = 61;
const SLEEP = `127.${NET}.1.10`;
const ATTACKER = `127.${NET}.9.9`;
const GUARDED = `127.${NET}.2.10`; // ALLOW only from sleep's address
const FENCED = `127.${NET}.2.11`; // DENY from the attacker's address
const yaml = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${SLEEP}"], protocol: HBONE, node: node-a}
- {name: guarded, namespace: guarded, serviceAccount: guarded, workloadIps: ["${GUARDED}"], protocol: HBONE, node: node-b}
- {name: fenced, namespace: fenced, serviceAccount: fenced, workloadIps: ["${FENCED}"], protocol: HBONE, node: node-b}
policies:
- {name: only-sleep-ip, namespace: guarded, scope: Namespace, action: Allow, rules: [[[{sourceIps: ["${SLEEP}/32"]}]]]}
- {name: no-attacker-ip, namespace: fenced, scope: Namespace, action: Deny, rules: [[[{sourceIps: ["${ATTACKER}/32"]}]]]}
`;
let mesh: LoopbackMesh;
let certs: CertManager;
const echoes: net.Server[] = [];

beforeAll(async () => {
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-b"], workloadsFile: workloadDir().write("mesh.yaml", yaml) });
  certs = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  for (const ip of [GUARDED, FENCED]) echoes.push(await startEcho(ip, 8080));
});
afterAll(async () => {
  for (const e of echoes) e.close();
  certs?.close();
  await mesh?.stop();
});

/** One CONNECT from `localAddress` presenting `sa`'s certificate, claiming `forwarded`. */
async function connect(sa: string, localAddress: string, target: string, forwarded: string): Promise<number | undefined> {
  const hs = await tlsTo(target, 15008, await certs.fetch(`spiffe://cluster.local/ns/default/sa/${sa}`), { localAddress });
  if (!hs.ok) throw new Error(hs.error);
  const session = h2Over(hs.socket, target, 15008);
  try {
    return (await request(session, { ":method": "CONNECT", ":authority": `${target}:8080`, forwarded })).status;
  } finally {
    session.destroy();
  }
}

const lineFrom = (addrPrefix: string, dst: string): Promise<Record<string, unknown> | undefined> =>
  until(`log from ${addrPrefix} to ${dst}`, () => mesh.agents[0]!.accessLogs().find((l) => String(l["src.addr"]).startsWith(addrPrefix) && l["dst.addr"] === `${dst}:8080`), (l) => l !== undefined);

describe("a forged forwarded header", () => {
  test("does not satisfy an ALLOW on sourceIps; the real owner of the address does", async () => {
    expect(await connect("sleep", SLEEP, GUARDED, `for="${SLEEP}:40000"`)).toBe(200);
    expect(await connect("evil", ATTACKER, GUARDED, `for="${SLEEP}:40001"`)).toBe(401);
    const denied = await lineFrom(`${ATTACKER}:`, GUARDED);
    expect(denied).toMatchObject({ "src.identity": "spiffe://cluster.local/ns/default/sa/evil", response_flags: "DENY" });
    // Credited to nobody: not to the workload whose address it named.
    expect(denied!["src.workload"]).toBeUndefined();
    expect(String(denied!["error"])).toContain("denied-no-allow-match");
  });

  test("does not dodge a DENY on sourceIps", async () => {
    expect(await connect("evil", ATTACKER, FENCED, `for="${SLEEP}:40002"`)).toBe(401);
    const line = await lineFrom(`${ATTACKER}:`, FENCED);
    expect(line).toMatchObject({ response_flags: "DENY" });
    expect(String(line!["error"])).toContain("no-attacker-ip");
    const metrics = (await mesh.agents[0]!.get("stats", "/metrics")).body;
    expect(counter(metrics, "istio_tcp_connections_failed_total", { response_flags: "DENY", source_workload: "sleep" })).toBe(0);
  });

  test("from the identity that owns the address, is the source for policy, logs and metrics", async () => {
    expect(await connect("sleep", ATTACKER, FENCED, `for="${SLEEP}:40003"`)).toBe(200);
    const line = await lineFrom(`${SLEEP}:40003`, FENCED);
    expect(line).toMatchObject({ "src.workload": "sleep", "src.identity": "spiffe://cluster.local/ns/default/sa/sleep" });
  });
});
