import type net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { echoFlow, socksConnect, SocksRefused, startEcho, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// Two agents on 127.11.x.y: every outbound decision, checked end to end.
const NET = 11;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
let mesh: LoopbackMesh;
const servers: net.Server[] = [];
const socks = (): { host: string; port: number } => ({ host: mesh.host(0), port: 15080 });

beforeAll(async () => {
  const files = workloadDir();
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], workloadsFile: files.write("mesh.yaml", meshYaml(NET)) });
  for (const [ip, port] of [[`${B}.10`, 8080], [`${B}.11`, 8080], [`${A}.11`, 8080], [`${B}.20`, 8080], [`127.${NET}.9.9`, 8080]] as const) {
    servers.push(await startEcho(ip, port));
  }
});

afterAll(async () => {
  for (const s of servers) s.close();
  await mesh?.stop();
});

function inboundLog(srcAddr: string): Record<string, unknown> | undefined {
  return mesh.agents[1]!.accessLogs().find((l) => l["src.addr"] === srcAddr);
}
function outboundLog(srcAddr: string): Record<string, unknown> | undefined {
  return mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === srcAddr && l["direction"] === "outbound");
}

describe("outbound through SOCKS5", () => {
  test("service VIP goes to a healthy endpoint over HBONE, identity seen by the peer", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await echoFlow(socks(), `${A}.10`, `127.${NET}.3.1`, 80, 100_000);
      expect(r).toMatchObject({ ok: true, detail: "intact", bytes: 100_000 });
      const seen = await until("inbound log", () => inboundLog(r.srcAddr), (l) => l !== undefined);
      expect(seen).toMatchObject({ "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", "dst.workload": "echo", "dst.addr": `${B}.10:8080`, direction: "inbound" });
      const out = await until("outbound log", () => outboundLog(r.srcAddr), (l) => l !== undefined);
      expect(out).toMatchObject({ "dst.service": "echo.default.svc.cluster.local", "dst.hbone_addr": `${B}.10:15008`, "dst.identity": "spiffe://cluster.local/ns/default/sa/echo", bytes_sent: 100_000, bytes_recv: 100_000 });
    }
  });

  test("service hostname through SOCKS5 resolves to the VIP", async () => {
    const r = await echoFlow(socks(), `${A}.10`, "echo.default.svc.cluster.local", 80);
    expect(r.ok).toBe(true);
  });

  test("pod IP on another node goes over HBONE", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `${B}.10`, 8080);
    expect(r.ok).toBe(true);
    const seen = await until("inbound log", () => inboundLog(r.srcAddr), (l) => l !== undefined);
    expect(seen["src.identity"]).toBe("spiffe://cluster.local/ns/default/sa/sleep");
  });

  test("pod on the same node goes through this node's own inbound with the same checks", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `${A}.11`, 8080);
    expect(r.ok).toBe(true);
    const seen = await until("inbound log", () => mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === r.srcAddr && l["direction"] === "inbound"), (l) => l !== undefined);
    expect(seen).toMatchObject({ "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", "dst.workload": "local-echo" });
  });

  test("workload outside the mesh (protocol TCP) is reached by plain TCP", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `${B}.20`, 8080);
    expect(r.ok).toBe(true);
    const out = await until("outbound log", () => outboundLog(r.srcAddr), (l) => l !== undefined);
    expect(out["dst.hbone_addr"]).toBeUndefined();
    expect(out["dst.workload"]).toBe("legacy");
    expect(inboundLog(r.srcAddr)).toBeUndefined();
  });

  test("unknown IP under ALLOW_ANY is passed through", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `127.${NET}.9.9`, 8080);
    expect(r.ok).toBe(true);
  });

  test("unknown source IP is refused, logged once and counted", async () => {
    const before = (await mesh.agents[0]!.get("stats", "/metrics")).body;
    const r = await echoFlow(socks(), `${A}.99`, `${B}.10`, 8080);
    expect(r).toMatchObject({ ok: false, detail: "refused (SOCKS reply 2)" });
    const after = await until("failed metric", async () => (await mesh.agents[0]!.get("stats", "/metrics")).body, (t) => counter(t, "istio_tcp_connections_failed_total", { response_flags: "UNKNOWN_SOURCE" }) > counter(before, "istio_tcp_connections_failed_total", { response_flags: "UNKNOWN_SOURCE" }));
    expect(counter(after, "istio_tcp_connections_failed_total", { response_flags: "UNKNOWN_SOURCE" })).toBe(counter(before, "istio_tcp_connections_failed_total", { response_flags: "UNKNOWN_SOURCE" }) + 1);
    const lines = mesh.agents[0]!.accessLogs().filter((l) => String(l["src.addr"]).startsWith(`${A}.99:`));
    expect(lines).toHaveLength(1);
    expect(String(lines[0]!["error"])).toContain("UNKNOWN_SOURCE");
  });

  test("a source outside the mesh (protocol TCP) is refused", async () => {
    const r = await echoFlow(socks(), `${A}.12`, `${B}.10`, 8080);
    expect(r.detail).toBe("refused (SOCKS reply 2)");
  });

  test("policy denial: 401 from the peer, DENY on both sides", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `${B}.10`, 9999);
    expect(r.detail).toBe("refused (SOCKS reply 2)");
    const t = await until("deny metric", async () => (await mesh.agents[1]!.get("stats", "/metrics")).body, (x) => counter(x, "istio_tcp_connections_failed_total", { reporter: "destination", response_flags: "DENY" }) >= 1);
    expect(counter(t, "istio_tcp_connections_failed_total", { reporter: "destination", response_flags: "DENY", source_principal: "spiffe://cluster.local/ns/default/sa/sleep" })).toBeGreaterThanOrEqual(1);
  });

  test("closed target port: 503 from the peer, connection refused to the client", async () => {
    const r = await echoFlow(socks(), `${A}.10`, `${B}.10`, 8081);
    expect(r.detail).toBe("refused (SOCKS reply 5)");
  });

  test("service without a healthy endpoint for the port is refused", async () => {
    expect((await echoFlow(socks(), `${A}.10`, `127.${NET}.3.2`, 80)).detail).toBe("refused (SOCKS reply 4)");
    expect((await echoFlow(socks(), `${A}.10`, `127.${NET}.3.1`, 81)).detail).toBe("refused (SOCKS reply 4)");
  });

  test("the agent's own ports are never a destination", async () => {
    const r = await echoFlow(socks(), `${A}.10`, mesh.host(0), 15000);
    expect(r.detail).toBe("refused (SOCKS reply 2)");
  });

  test("malformed SOCKS5 gets an answer and a log line, nothing else", async () => {
    const s = await socksConnect({ proxy: socks(), localAddress: `${A}.10`, host: "no-such-host.example", port: 80 }).catch((e: unknown) => e);
    expect(s).toBeInstanceOf(SocksRefused);
    expect((s as SocksRefused).reply).toBe(4);
  });
});

describe("half-close and reset", () => {
  test("server FIN first: the client still sends afterwards and everything arrives", async () => {
    const { default: netMod } = await import("node:net");
    let received = 0;
    const got = new Promise<number>((resolve) => {
      const srv = netMod.createServer({ allowHalfOpen: true }, (s) => {
        s.end("hello");
        s.on("data", (c: Buffer) => (received += c.length));
        s.on("end", () => resolve(received));
      });
      srv.listen(7070, `${B}.10`);
      servers.push(srv);
    });
    await new Promise((r) => setTimeout(r, 50));
    const sock = await socksConnect({ proxy: socks(), localAddress: `${A}.10`, host: `${B}.10`, port: 7070 });
    let text = "";
    sock.on("data", (c: Buffer) => (text += c.toString()));
    sock.resume();
    await new Promise<void>((resolve) => sock.once("end", () => resolve()));
    expect(text).toBe("hello");
    sock.end(Buffer.alloc(300_000, 7));
    expect(await got).toBe(300_000);
  });

  test("a reset by the server resets the client", async () => {
    const { default: netMod } = await import("node:net");
    const srv = netMod.createServer((s) => s.once("data", () => s.resetAndDestroy()));
    await new Promise<void>((r) => srv.listen(7071, `${B}.10`, () => r()));
    servers.push(srv);
    const sock = await socksConnect({ proxy: socks(), localAddress: `${A}.10`, host: `${B}.10`, port: 7071 });
    const ended = new Promise<string>((resolve) => {
      sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      sock.once("end", () => resolve("end"));
    });
    sock.resume();
    sock.write("x");
    expect(await ended).toBe("ECONNRESET");
  });
});

describe("metrics, config_dump, readiness", () => {
  test("metrics carry the contract's names and labels", async () => {
    const t = (await mesh.agents[0]!.get("stats", "/metrics")).body;
    expect(counter(t, "istio_tcp_connections_opened_total", { reporter: "source", source_workload: "sleep", destination_service: "echo.default.svc.cluster.local", connection_security_policy: "mutual_tls" })).toBeGreaterThan(0);
    expect(counter(t, "istio_tcp_sent_bytes_total", { reporter: "source" })).toBeGreaterThan(0);
    expect((await mesh.agents[0]!.get("stats", "/stats/prometheus")).status).toBe(200);
  });

  test("config_dump shows workloads, services, policies, certificates and config", async () => {
    const r = await mesh.agents[0]!.get("admin", "/config_dump");
    const dump = JSON.parse(r.body) as Record<string, unknown[]> & { certificates: { identity: string; state: string; certChain: unknown[] }[] };
    expect(Object.keys(dump)).toEqual(expect.arrayContaining(["workloads", "services", "policies", "certificates", "config", "version"]));
    expect(dump.workloads.length).toBe(6);
    const ids = dump.certificates.map((c) => c.identity).sort();
    expect(ids).toEqual(["spiffe://cluster.local/ns/default/sa/echo", "spiffe://cluster.local/ns/default/sa/sleep"]);
    expect(dump.certificates.every((c) => c.state === "Available" && c.certChain.length >= 1)).toBe(true);
  });

  test("readiness answers ready", async () => {
    expect(await mesh.agents[1]!.get("readiness", "/healthz/ready")).toEqual({ status: 200, body: "ready\n" });
  });
});

describe("capture listeners without capture rules", () => {
  /** Connect straight to one of the agent's capture ports and wait until it hangs up. */
  async function knock(port: number): Promise<void> {
    const { default: netMod } = await import("node:net");
    await new Promise<void>((resolve) => {
      const s = netMod.connect({ host: mesh.host(0), port, localAddress: `${A}.10` }, () => s.write("x"));
      s.on("error", () => {});
      s.resume();
      s.once("close", () => resolve());
    });
  }
  const lineFor = (dst: string): Promise<Record<string, unknown>> =>
    until(`log for ${dst}`, () => mesh.agents[0]!.accessLogs().find((l) => l["dst.addr"] === dst), (l) => l !== undefined);

  test("15001 reached directly (original destination = itself) is refused as a loop", async () => {
    await knock(15001);
    expect(await lineFor(`${mesh.host(0)}:15001`)).toMatchObject({ direction: "outbound", response_flags: "LOOP" });
  });

  test("15006 reached directly (not a workload address) is refused", async () => {
    await knock(15006);
    expect(await lineFor(`${mesh.host(0)}:15006`)).toMatchObject({ direction: "inbound", response_flags: "NO_ROUTE" });
  });
});

describe("bad input and back-pressure", () => {
  test("garbage on the SOCKS5 port is closed, logged once and counted", async () => {
    const { default: netMod } = await import("node:net");
    const before = (await mesh.agents[0]!.get("stats", "/metrics")).body;
    const local = await new Promise<string>((resolve) => {
      const s = netMod.connect({ host: mesh.host(0), port: 15080, localAddress: `${A}.10` }, () => s.write("HELLO\r\n"));
      const addr = (): string => `${s.localAddress}:${s.localPort}`;
      let a = "";
      s.once("connect", () => (a = addr()));
      s.on("error", () => {});
      s.resume();
      s.once("close", () => resolve(a));
    });
    const line = await until("log line", () => mesh.agents[0]!.accessLogs().find((l) => l["src.addr"] === local), (l) => l !== undefined);
    expect(String(line["error"])).toMatch(/^SOCKS_MALFORMED/);
    const after = await until("metric", async () => (await mesh.agents[0]!.get("stats", "/metrics")).body, (t) => counter(t, "istio_tcp_connections_failed_total", { response_flags: "BAD_REQUEST" }) > counter(before, "istio_tcp_connections_failed_total", { response_flags: "BAD_REQUEST" }));
    expect(counter(after, "istio_tcp_connections_failed_total", { response_flags: "BAD_REQUEST" })).toBe(counter(before, "istio_tcp_connections_failed_total", { response_flags: "BAD_REQUEST" }) + 1);
  });

  test("a reader that never reads holds the writer back; the agents' memory stays bounded", async () => {
    const { default: netMod } = await import("node:net");
    const { readFileSync } = await import("node:fs");
    const rss = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
    const stuck = netMod.createServer({ pauseOnConnect: true }, () => {});
    await new Promise<void>((r) => stuck.listen(7072, `${B}.10`, () => r()));
    servers.push(stuck);
    const pids = mesh.agents.map((a) => a.proc.pid!);
    const rssBefore = pids.map(rss);
    const sock = await socksConnect({ proxy: socks(), localAddress: `${A}.10`, host: `${B}.10`, port: 7072 });
    sock.on("error", () => {});
    const chunk = Buffer.alloc(1024 * 1024);
    let offered = 0;
    // Write until the socket refuses more and no 'drain' comes for a second (bounded: 256 MiB).
    for (;;) {
      while (offered < 256 * 1024 * 1024 && sock.write(chunk)) offered += chunk.length;
      if (offered >= 256 * 1024 * 1024) break;
      offered += chunk.length;
      const drained = await new Promise<boolean>((r) => {
        const t = setTimeout(() => r(false), 1000);
        sock.once("drain", () => {
          clearTimeout(t);
          r(true);
        });
      });
      if (!drained) break;
    }
    const accepted = sock.bytesWritten - sock.writableLength;
    const grown = pids.map((p, i) => rss(p) - rssBefore[i]!);
    sock.destroy();
    expect(offered).toBeLessThan(256 * 1024 * 1024);
    expect(accepted).toBeLessThan(64 * 1024 * 1024);
    for (const g of grown) expect(g).toBeLessThan(64 * 1024 * 1024);
  });
});
