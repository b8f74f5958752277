import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startEcho, startLoopbackMesh, type AgentProcess, type LoopbackMesh } from "@zt/harness";
import { createCertManager, loadOrCreateCa, type WorkloadCertificate } from "@zt/identity";
import { rawHboneClient } from "./support/faulty-peer.js";
import { rapidReset } from "./support/h2-attacks.js";
import { connectHeaders, ErrorCode, errorCodeOf, Flag, Frame, frame, headerFrames, headersFrame, hpack, isOk, ping, settingsFrame, type RawConnection } from "./support/h2-raw.js";
import { steadyFlow, type SteadyFlow } from "./support/legit-flow.js";
import { workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// Frame-level attacks by a mesh identity with a valid certificate ("evil"), written on the
// raw frame layer, against node-b's agent while a legitimate flow (sleep on node-a -> echo
// on node-b) keeps running and is hashed. Agents on 127.66.x.y.
const NET = 66;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const ECHO = `${B}.10`;
const yaml = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${A}.10"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${ECHO}"], protocol: HBONE, node: node-b}
- {name: sink, namespace: default, serviceAccount: sink, workloadIps: ["${B}.11"], protocol: HBONE, node: node-b}
`;
let mesh: LoopbackMesh;
let evil: WorkloadCertificate;
let echoAccepted = 0;
let legit: SteadyFlow;
const servers: net.Server[] = [];
const conns: RawConnection[] = [];

beforeAll(async () => {
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], workloadsFile: workloadDir().write("mesh.yaml", yaml), env: { HBONE_KEEPALIVE_INTERVAL: "500ms", HBONE_KEEPALIVE_TIMEOUT: "2s" } });
  const certs = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  evil = await certs.fetch("spiffe://cluster.local/ns/default/sa/evil");
  certs.close();
  const echo = await startEcho(ECHO, 8080);
  echo.on("connection", () => echoAccepted++);
  const sink = net.createServer({ pauseOnConnect: true }, (s) => s.on("error", () => {}));
  await new Promise<void>((r) => sink.listen(8080, `${B}.11`, () => r()));
  servers.push(echo, sink);
  legit = steadyFlow({ host: mesh.host(0), port: 15080 }, `${A}.10`, ECHO, 8080, 64 * 1024);
  await until("legit flow running", () => legit.ok(), (n) => n >= 2, 10_000);
});
afterAll(async () => {
  const r = await legit?.stop();
  for (const c of conns) c.socket.destroy();
  for (const s of servers) s.close();
  await mesh?.stop();
  // The legitimate flow passed throughout every attack.
  expect(r?.failures).toEqual([]);
});

const b = (): AgentProcess => mesh.agents[1]!;
const metrics = async (): Promise<string> => (await b().get("stats", "/metrics")).body;
async function client(ip = ECHO): Promise<RawConnection> {
  const c = await rawHboneClient(ip, 15008, evil);
  conns.push(c);
  return c;
}
const closed = (c: RawConnection): Promise<void> => new Promise((resolve) => (c.socket.destroyed ? resolve() : c.socket.once("close", () => resolve())));
const goawayCode = async (c: RawConnection): Promise<number> => errorCodeOf(await c.waitFor((f) => f.type === Frame.GOAWAY, 15_000));
const evilLines = (code: string): Record<string, unknown>[] => b().accessLogs().filter((l) => l["src.identity"] === "spiffe://cluster.local/ns/default/sa/evil" && String(l["error"] ?? "").startsWith(`${code}:`));

describe("rapid reset", () => {
  test("streams reset in the same read as their HEADERS cost no upstream dial, and are counted for the peer", async () => {
    const before = echoAccepted;
    const bursts = await Promise.all(Array.from({ length: 5 }, () => rapidReset(ECHO, `${ECHO}:8080`, evil, 1000)));
    conns.push(...bursts);
    await until("resets counted", metrics, (m) => counter(m, "istio_tcp_connections_failed_total", { response_flags: "RESET", source_principal: "spiffe://cluster.local/ns/default/sa/evil" }) >= 4000, 20_000);
    // The legit flow's own connections are the only ones the echo should see in bulk.
    expect(echoAccepted - before - legit.ok()).toBeLessThan(100);
    expect(counter(await metrics(), "ztunnel_hbone_peer_resets", { source_principal: "spiffe://cluster.local/ns/default/sa/evil" })).toBeGreaterThanOrEqual(4000);
    expect(b().proc.exitCode).toBeNull();
  });
});

describe("refusals that cost the attacker nothing", () => {
  test("a 4 KB bad :authority cached in HPACK: refused, logged a few times, capped in length, then GOAWAY (no more streams)", async () => {
    const c = await client();
    const bad = "x".repeat(4000);
    // Once into the peer's dynamic table (:authority at index 63, :method at 62) ...
    c.send(headersFrame(1, hpack([{ kind: "indexing", name: ":authority", value: bad }, { kind: "indexing", name: ":method", value: "CONNECT" }])));
    // ... then 2 bytes a stream.
    const frames: Buffer[] = [];
    for (let i = 1; i < 3000; i++) frames.push(headersFrame(2 * i + 1, hpack([{ kind: "indexed", index: 62 }, { kind: "indexed", index: 63 }])));
    c.send(...frames);
    expect(await goawayCode(c)).toBe(ErrorCode.NO_ERROR);
    await until("refusals counted", metrics, (m) => counter(m, "istio_tcp_connections_failed_total", { response_flags: "BAD_REQUEST", source_principal: "spiffe://cluster.local/ns/default/sa/evil" }) >= 100);
    const lines = evilLines("HBONE_BAD_AUTHORITY");
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(11);
    for (const l of lines) expect(JSON.stringify(l).length).toBeLessThan(2048);
  });
});

describe("connections nghttp2 ends on its own get a log line and a metric", () => {
  test("a header field over 64 KB (COMPRESSION_ERROR)", async () => {
    const c = await client();
    c.send(headerFrames(1, hpack([[":method", "CONNECT"], [":authority", `${ECHO}:8080`], ["x-big", "a".repeat(70_000)]])));
    expect(await goawayCode(c)).toBe(ErrorCode.COMPRESSION_ERROR);
    // The attacker keeps the connection open; nghttp2 no longer serves it, and the agent's
    // keepalive finds its PING stuck there and closes it (HBONE_STALLED).
    await closed(c);
    await until("stalled line", () => evilLines("HBONE_STALLED").length, (n) => n >= 1, 10_000);
    const m = await metrics();
    expect(counter(m, "istio_tcp_connections_failed_total", { response_flags: "RESET", source_principal: "spiffe://cluster.local/ns/default/sa/evil" })).toBeGreaterThan(0);
  });

  test("data past a stream's flow-control window (FLOW_CONTROL_ERROR)", async () => {
    const c = await client(`${B}.11`);
    const before = evilLines("HBONE_PROTOCOL_ERROR").length;
    c.send(headersFrame(1, connectHeaders(`${B}.11:8080`)));
    expect(isOk(await c.waitFor((f) => f.type === Frame.HEADERS && f.stream === 1))).toBe(true);
    const chunk = frame(Frame.DATA, 0, 1, Buffer.alloc(16_384));
    for (let i = 0; i < 400; i++) c.send(chunk);
    const rst = await c.waitFor((f) => f.type === Frame.RST_STREAM && f.stream === 1);
    expect(errorCodeOf(rst)).toBe(ErrorCode.FLOW_CONTROL_ERROR);
    await until("protocol-error line", () => evilLines("HBONE_PROTOCOL_ERROR").length, (n) => n > before);
  });
});

describe("floods that already ended in a closed connection (regression)", () => {
  test("CONTINUATION without end", async () => {
    const c = await client();
    const frames = [frame(Frame.HEADERS, 0, 1, hpack([[":method", "CONNECT"]]))];
    for (let i = 0; i < 20_000; i++) frames.push(frame(Frame.CONTINUATION, 0, 1, hpack([[`x-${i % 50}`, "v"]])));
    c.send(...frames);
    await closed(c);
  });

  test("PINGs whose acks are never read", async () => {
    const c = await client();
    c.pause();
    const frames: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) frames.push(ping(Buffer.alloc(8, i % 256)));
    c.send(...frames);
    // Reading again (a paused socket would not even see its close).
    await new Promise((r) => setTimeout(r, 1000));
    c.socket.resume();
    await closed(c);
  });

  test("SETTINGS, over and over", async () => {
    const c = await client();
    c.pause();
    const frames: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) frames.push(settingsFrame({ [4]: 65_535 + (i % 7) }));
    c.send(...frames);
    await new Promise((r) => setTimeout(r, 1000));
    c.socket.resume();
    await closed(c);
  });

  test("more than 200 streams on one connection: the rest are refused, the 200 are served", async () => {
    const c = await client();
    const frames: Buffer[] = [];
    for (let i = 0; i < 300; i++) frames.push(headersFrame(2 * i + 1, connectHeaders(`${ECHO}:8080`)));
    c.send(...frames);
    await until("answers", () => c.frames.filter((f) => (f.type === Frame.HEADERS && isOk(f)) || f.type === Frame.RST_STREAM).length, (n) => n >= 300, 15_000);
    expect(c.frames.filter((f) => f.type === Frame.HEADERS && isOk(f))).toHaveLength(200);
    expect(c.frames.filter((f) => f.type === Frame.RST_STREAM && errorCodeOf(f) === ErrorCode.REFUSED_STREAM).length).toBe(100);
    expect(c.frames.some((f) => f.type === Frame.HEADERS && (f.flags & Flag.END_STREAM) !== 0)).toBe(false);
  });
});
