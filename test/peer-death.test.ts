import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { socksConnect, startLoopbackMesh, type AgentProcess, type LoopbackMesh } from "@zt/harness";
import { createCertManager, loadOrCreateCa, type CertManager } from "@zt/identity";
import { fdCount, settlesTo } from "./support/fds.js";
import { startFaultyPeer, rawHboneClient, type Fault, type FaultyPeer } from "./support/faulty-peer.js";
import { connectHeaders, Frame, headersFrame, isOk, frame as rawFrame } from "./support/h2-raw.js";
import { workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// When an HBONE connection ends under its streams, every client of those streams gets a
// TCP RST (never a FIN that would pass truncated data off as complete), one access-log
// line names why, and nothing is left behind. Agents on 127.60.x.y; fake destination
// agents (raw HTTP/2) on 127.60.3.x.
const NET = 60;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const F = `127.${NET}.3`;
const yaml = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${A}.10"], protocol: HBONE, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${B}.10"], protocol: HBONE, node: node-b}
- {name: fin, namespace: default, serviceAccount: fake, workloadIps: ["${F}.1"], protocol: HBONE, node: node-f}
- {name: goaway, namespace: default, serviceAccount: fake, workloadIps: ["${F}.2"], protocol: HBONE, node: node-f}
- {name: silent, namespace: default, serviceAccount: fake, workloadIps: ["${F}.3"], protocol: HBONE, node: node-f}
- {name: garbage, namespace: default, serviceAccount: fake, workloadIps: ["${F}.4"], protocol: HBONE, node: node-f}
`;
const FAKE_IP: Record<Fault, string> = { fin: `${F}.1`, "goaway-fin": `${F}.2`, silent: `${F}.3`, garbage: `${F}.4` };
const WORKLOAD: Record<Fault, string> = { fin: "fin", "goaway-fin": "goaway", silent: "silent", garbage: "garbage" };
const KEEPALIVE = { HBONE_KEEPALIVE_INTERVAL: "300ms", HBONE_KEEPALIVE_TIMEOUT: "600ms" };

const file = workloadDir().write("mesh.yaml", yaml);
let mesh: LoopbackMesh;
let certs: CertManager;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], workloadsFile: file, env: { ...KEEPALIVE, DRAIN_TIMEOUT: "1s" } });
  certs = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
});
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
afterAll(async () => {
  certs?.close();
  await mesh?.stop();
});

const agentA = (): AgentProcess => mesh.agents[0]!;

/** How a client's TCP connection ended: "rst" (ECONNRESET), "fin" (a clean end), or still open. */
function ending(sock: net.Socket): Promise<"rst" | "fin" | string> {
  return new Promise((resolve) => {
    sock.once("end", () => resolve("fin"));
    sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNRESET" ? "rst" : (e.code ?? e.message)));
    sock.once("close", () => resolve("closed"));
  });
}

/** An echo server that tells how each connection it served ended. */
async function recordingEcho(ip: string): Promise<{ endings: Promise<string>[] }> {
  const endings: Promise<string>[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    endings.push(ending(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(8080, ip, () => r()));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { endings };
}

/** Open a client through agent A's SOCKS5 to dst:8080 and see 4 KiB echoed. */
async function openClient(dst: string): Promise<net.Socket> {
  const sock = await socksConnect({ proxy: { host: mesh.host(0), port: 15080 }, localAddress: `${A}.10`, host: dst, port: 8080 });
  sock.on("error", () => {});
  cleanups.push(() => sock.destroy());
  const payload = randomBytes(4096);
  const echoed = new Promise<void>((resolve) => {
    let got = 0;
    const on = (c: Buffer): void => {
      got += c.length;
      if (got >= payload.length) {
        sock.off("data", on);
        resolve();
      }
    };
    sock.on("data", on);
  });
  sock.resume();
  sock.write(payload);
  await echoed;
  return sock;
}

const accessLine = (a: AgentProcess, code: string, dstAddr?: string): Promise<Record<string, unknown> | undefined> =>
  until(
    `${a.node} access log with ${code}`,
    () => a.accessLogs().find((l) => String(l["error"] ?? "").startsWith(`${code}:`) && (dstAddr === undefined || l["dst.addr"] === dstAddr)),
    (l) => l !== undefined,
    10_000,
  );

describe("the destination's agent goes away: every client gets an RST", () => {
  for (const [fault, code] of [
    ["fin", "HBONE_CONNECTION_LOST"],
    ["goaway-fin", "HBONE_CONNECTION_LOST"],
    ["silent", "HBONE_KEEPALIVE_TIMEOUT"],
    ["garbage", "HBONE_CONNECTION_LOST"],
  ] as const) {
    test(`${fault}: the open streams are reset, logged once with ${code}, and released`, async () => {
      const peer: FaultyPeer = await startFaultyPeer(FAKE_IP[fault], await certs.fetch("spiffe://cluster.local/ns/default/sa/fake"));
      cleanups.push(() => peer.close());
      const pid = agentA().proc.pid!;
      const before = fdCount(pid);
      const clients = await Promise.all([openClient(FAKE_IP[fault]), openClient(FAKE_IP[fault])]);
      const ends = clients.map(ending);
      peer.fault(fault);
      expect(await Promise.all(ends)).toEqual(["rst", "rst"]);
      const line = await accessLine(agentA(), code, `${FAKE_IP[fault]}:8080`).catch((e) => { console.log(JSON.stringify(agentA().logs.slice(-6), null, 1), agentA().proc.exitCode); throw e; });
      expect(line).toMatchObject({ direction: "outbound", "dst.workload": WORKLOAD[fault], response_flags: "RESET" });
      await until("both lines", () => agentA().accessLogs().filter((l) => String(l["error"] ?? "").startsWith(`${code}:`) && l["dst.addr"] === `${FAKE_IP[fault]}:8080`).length, (n) => n === 2);
      expect(await settlesTo(pid, before, 10_000)).toBeLessThanOrEqual(before);
    });
  }
});

describe("a real destination agent dies or drains", () => {
  test("SIGKILL: the source agent resets its clients and drops the records", async () => {
    const echo = await recordingEcho(`${B}.10`);
    const clients = await Promise.all([openClient(`${B}.10`), openClient(`${B}.10`)]);
    const ends = clients.map(ending);
    mesh.agents[1]!.proc.kill("SIGKILL");
    expect(await Promise.all(ends)).toEqual(["rst", "rst"]);
    await accessLine(agentA(), "HBONE_CONNECTION_LOST");
    expect(echo.endings).toHaveLength(2);
    // The destination pods faced the killed agent itself: its kernel reset their connections (SO_LINGER 0), no FIN.
    expect(await Promise.all(echo.endings)).toEqual(["rst", "rst"]);
    await restartB();
  });

  test("drain (/quitquitquit): live streams run until the drain window ends, then their clients get an RST", async () => {
    await recordingEcho(`${B}.10`);
    const client = await openClient(`${B}.10`);
    const end = ending(client);
    const b = mesh.agents[1]!;
    await postQuit(b);
    // Still carrying bytes during the drain window.
    const probe = randomBytes(1000);
    const back = new Promise<Buffer>((resolve) => client.once("data", (c: Buffer) => resolve(c)));
    client.write(probe);
    expect(createHash("sha256").update(await back).digest("hex")).toBe(createHash("sha256").update(probe).digest("hex"));
    expect(await end).toBe("rst");
    expect(await b.exited).toBe(0);
    // The line says the drain cut it, not that the other side reset it.
    expect(b.accessLogs().filter((l) => l["direction"] === "inbound" && String(l["error"] ?? "").startsWith("DRAINING:"))).toHaveLength(1);
    await restartB();
  });
});

describe("the source's agent goes away: the destination pod gets an RST", () => {
  test("SIGKILL of the source agent resets the upstream connection and logs it", async () => {
    const echo = await recordingEcho(`${B}.10`);
    const client = await openClient(`${B}.10`);
    const clientEnd = ending(client);
    const a = mesh.agents[0]!;
    a.proc.kill("SIGKILL");
    // The client faced the killed agent itself: its kernel reset the connection (SO_LINGER 0), no FIN.
    expect(await clientEnd).toBe("rst");
    await until("upstream accepted", () => echo.endings.length, (n) => n === 1);
    expect(await echo.endings[0]).toBe("rst");
    await accessLine(mesh.agents[1]!, "HBONE_CONNECTION_LOST");
    await restartA();
  });

  test("a source that stops answering PINGs: keepalive ends its streams with an RST upstream", async () => {
    const echo = await recordingEcho(`${B}.10`);
    const conn = await rawHboneClient(`${B}.10`, 15008, await certs.fetch("spiffe://cluster.local/ns/default/sa/sleep"));
    cleanups.push(() => conn.socket.destroy());
    conn.send(headersFrame(1, connectHeaders(`${B}.10:8080`)));
    const answer = await conn.waitFor((f) => f.type === Frame.HEADERS && f.stream === 1);
    expect(isOk(answer)).toBe(true);
    conn.send(rawFrame(Frame.DATA, 0, 1, Buffer.from("hello")));
    await until("upstream accepted", () => echo.endings.length, (n) => n === 1);
    conn.autoAck = false;
    conn.pause();
    expect(await echo.endings[0]).toBe("rst");
    await accessLine(mesh.agents[1]!, "HBONE_KEEPALIVE_TIMEOUT");
  });
});

async function postQuit(a: AgentProcess): Promise<void> {
  const [host, port] = [a.env["ADMIN_ADDR"]!.split(":")[0]!, Number(a.env["ADMIN_ADDR"]!.split(":")[1])];
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ host, port }, () => s.end(`POST /quitquitquit HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Length: 0\r\n\r\n`));
    s.on("data", () => undefined);
    s.once("close", () => resolve());
    s.once("error", reject);
  });
}

async function restart(i: number): Promise<void> {
  const old = mesh.agents[i]!;
  await old.exited;
  const fresh = await (await import("@zt/harness")).startAgentProcess(old.node, old.env);
  (mesh.agents as AgentProcess[])[i] = fresh;
}
const restartA = (): Promise<void> => restart(0);
const restartB = (): Promise<void> => restart(1);
