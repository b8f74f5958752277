import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startEcho, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { createCertManager, loadOrCreateCa, type CertManager, type WorkloadCertificate } from "@zt/identity";
import { h2Over, rawBytes, request, tlsTo } from "./support/hbone-client.js";
import { settlesTo, fdCount } from "./support/fds.js";
import { meshYaml, workloadDir } from "./support/mesh-file.js";
import { counter, until } from "./support/metrics.js";

// One agent, node-b (its control ports on 127.21.1.1), and a raw HBONE client against its
// inbound listener on the workload IP 127.21.2.10:15008: every answer
// of the contract, each with its log line and failure metric, and no leaked sockets.
const NET = 21;
const B = `127.${NET}.2`;
const TARGET = `${B}.10`;
let mesh: LoopbackMesh;
let certs: CertManager;
let otherCerts: CertManager;
let evilCerts: CertManager;
let sleep: WorkloadCertificate;
let echo: net.Server;
let baselineFds = 0;

beforeAll(async () => {
  const files = workloadDir();
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-b"], workloadsFile: files.write("mesh.yaml", meshYaml(NET)) });
  certs = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  otherRoot = mkdtempSync(path.join(tmpdir(), "zt-other-"));
  otherCerts = createCertManager({ source: await loadOrCreateCa({ dir: path.join(otherRoot, "ca"), trustDomain: "cluster.local" }), ttlMs: 3_600_000 });
  evilCerts = createCertManager({ source: await loadOrCreateCa({ dir: mesh.caDir, trustDomain: "evil.local" }), ttlMs: 3_600_000 });
  sleep = await certs.fetch("spiffe://cluster.local/ns/default/sa/sleep");
  echo = await startEcho(TARGET, 8080);
  baselineFds = fdCount(agent().proc.pid!);
});

let otherRoot = "";
afterAll(async () => {
  echo?.close();
  for (const c of [certs, otherCerts, evilCerts]) c?.close();
  await mesh?.stop();
  if (otherRoot) rmSync(otherRoot, { recursive: true, force: true });
});

const agent = (): LoopbackMesh["agents"][number] => mesh.agents[0]!;
const metrics = async (): Promise<string> => (await agent().get("stats", "/metrics")).body;
const failed = (t: string, flag: string): number => counter(t, "istio_tcp_connections_failed_total", { reporter: "destination", response_flags: flag });

/** Run `act`, then expect one more failed connection with `flag` and a log line whose error starts with `code`. */
async function expectFailure(flag: string, code: string, act: () => Promise<void>): Promise<void> {
  const before = failed(await metrics(), flag);
  const linesBefore = agent().accessLogs().filter((l) => String(l["error"]).startsWith(code)).length;
  await act();
  await until(`${flag} metric`, metrics, (t) => failed(t, flag) === before + 1);
  const lines = await until(`${code} log line`, () => agent().accessLogs().filter((l) => String(l["error"]).startsWith(code)), (l) => l.length === linesBefore + 1);
  expect(lines.at(-1)!["direction"]).toBe("inbound");
}

async function connectStream(headers: Record<string, string>): Promise<{ status: number | undefined; close: () => void }> {
  const hs = await tlsTo(TARGET, 15008, sleep);
  if (!hs.ok) throw new Error(`handshake failed: ${hs.error}`);
  const session = h2Over(hs.socket, TARGET, 15008);
  const a = await request(session, headers);
  return { status: a.status, close: () => session.destroy() };
}

describe("HBONE inbound answers", () => {
  test("a valid CONNECT gets 200 after the upstream connect, and bytes flow both ways with half-close", async () => {
    const hs = await tlsTo(TARGET, 15008, sleep);
    expect(hs.ok).toBe(true);
    if (!hs.ok) return;
    expect(hs.socket.getProtocol()).toBe("TLSv1.3");
    expect(hs.socket.alpnProtocol).toBe("h2");
    const session = h2Over(hs.socket, TARGET, 15008);
    const a = await request(session, { ":method": "CONNECT", ":authority": `${TARGET}:8080` });
    expect(a.status).toBe(200);
    const payload = randomBytes(300_000);
    const got = createHash("sha256");
    let n = 0;
    a.stream.on("data", (c: Buffer) => {
      n += c.length;
      got.update(c);
    });
    const ended = new Promise<void>((r) => a.stream.once("end", () => r()));
    a.stream.end(payload);
    await ended;
    expect(n).toBe(payload.length);
    expect(got.digest("hex")).toBe(createHash("sha256").update(payload).digest("hex"));
    session.close();
    const line = await until("access line", () => agent().accessLogs().find((l) => l["bytes_sent"] === 300_000), (l) => l !== undefined);
    expect(line).toMatchObject({ "src.identity": "spiffe://cluster.local/ns/default/sa/sleep", "dst.workload": "echo", direction: "inbound" });
  });

  test("non-TLS bytes are refused", async () => {
    await expectFailure("TLS_FAILURE", "NOT_TLS", async () => {
      await rawBytes(TARGET, 15008, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    });
  });

  test("TLS 1.2 is refused", async () => {
    await expectFailure("TLS_FAILURE", "TLS_VERSION_REFUSED", async () => {
      const hs = await tlsTo(TARGET, 15008, sleep, { minVersion: "TLSv1.2", maxVersion: "TLSv1.2", secureContext: undefined, key: sleep.keyPem, cert: sleep.certChain.join("\n") });
      expect(hs.ok).toBe(false);
    });
  });

  test("a client without ALPN h2 is refused", async () => {
    await expectFailure("TLS_FAILURE", "ALPN_MISMATCH", async () => {
      const hs = await tlsTo(TARGET, 15008, sleep, { ALPNProtocols: ["http/1.1"] });
      expect(hs.ok).toBe(false);
    });
  });

  test("a client without a certificate is refused", async () => {
    await expectFailure("TLS_FAILURE", "CLIENT_CERT_MISSING", async () => {
      expect((await tlsTo(TARGET, 15008, undefined)).ok).toBe(false);
    });
  });

  test("a certificate from another CA is refused", async () => {
    const foreign = await otherCerts.fetch("spiffe://cluster.local/ns/default/sa/sleep");
    await expectFailure("TLS_FAILURE", "CLIENT_CERT_UNTRUSTED", async () => {
      expect((await tlsTo(TARGET, 15008, foreign)).ok).toBe(false);
    });
  });

  test("a certificate of another trust domain, even from our root, is refused", async () => {
    const evil = await evilCerts.fetch("spiffe://evil.local/ns/default/sa/sleep");
    await expectFailure("TLS_FAILURE", "TRUST_DOMAIN_MISMATCH", async () => {
      expect((await tlsTo(TARGET, 15008, evil)).ok).toBe(false);
    });
  });

  test("a method other than CONNECT gets 400", async () => {
    await expectFailure("BAD_REQUEST", "HBONE_METHOD_NOT_ALLOWED", async () => {
      const r = await connectStream({ ":method": "GET", ":path": "/", ":authority": `${TARGET}:8080`, ":scheme": "https" });
      expect(r.status).toBe(400);
      r.close();
    });
  });

  test("an authority that does not parse gets 400", async () => {
    await expectFailure("BAD_REQUEST", "HBONE_BAD_AUTHORITY", async () => {
      const r = await connectStream({ ":method": "CONNECT", ":authority": "nonsense" });
      expect(r.status).toBe(400);
      r.close();
    });
  });

  test("an authority naming another address (a relay attempt to another node) gets 400", async () => {
    await expectFailure("BAD_REQUEST", "HBONE_AUTHORITY_MISMATCH", async () => {
      const r = await connectStream({ ":method": "CONNECT", ":authority": `127.${NET}.1.10:8080` });
      expect(r.status).toBe(400);
      r.close();
    });
  });

  test("one of the agent's own ports gets 503", async () => {
    await expectFailure("LOOP", "HBONE_LOOP", async () => {
      const r = await connectStream({ ":method": "CONNECT", ":authority": `${TARGET}:15000` });
      expect(r.status).toBe(503);
      r.close();
    });
  });

  test("a closed target port gets 503", async () => {
    await expectFailure("CONNECT", "UPSTREAM_REFUSED", async () => {
      const r = await connectStream({ ":method": "CONNECT", ":authority": `${TARGET}:8099` });
      expect(r.status).toBe(503);
      r.close();
    });
  });

  test("a policy denial gets 401", async () => {
    await expectFailure("DENY", "AUTHZ_DENIED", async () => {
      const r = await connectStream({ ":method": "CONNECT", ":authority": `${TARGET}:9999` });
      expect(r.status).toBe(401);
      r.close();
    });
  });

  test("oversized headers get 431 without a dial, and the agent keeps serving", async () => {
    await expectFailure("BAD_REQUEST", "HBONE_HEADERS_TOO_LARGE", async () => {
      const r = await connectStream({ ":method": "CONNECT", ":authority": `${TARGET}:8080`, "x-big": "x".repeat(32 * 1024) });
      expect(r.status).toBe(431);
      r.close();
    });
    const r = await connectStream({ ":method": "CONNECT", ":authority": `${TARGET}:8080` });
    expect(r.status).toBe(200);
    r.close();
  });

  test("after all of that: still ready, and no socket left behind", async () => {
    expect((await agent().get("readiness", "/healthz/ready")).status).toBe(200);
    expect(await settlesTo(agent().proc.pid!, baselineFds)).toBeLessThanOrEqual(baselineFds);
  });
});
