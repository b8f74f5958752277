import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadOrCreateCa, type BuiltinCa } from "@zt/identity";
import { startServingCert, type ServingCert } from "./serving-cert.js";

// The controller's serving certificate as a grpc-js certificate provider on a real grpc-js
// server over TLS on 127.0.0.1: a re-issued certificate reaches new connections without a
// restart; a connection already open keeps its own. The lifetime is short (3 s, re-issued
// at half of it) so that a re-issue happens during the test.
const NAME = "zt-controller.istio-system.svc";
let dir: string;
let ca: BuiltinCa;
let serving: ServingCert;
let server: grpc.Server;
let port: number;

/** A TLS handshake as an agent makes it (h2, the mesh root, the Service's name): the served certificate's serial. */
function handshake(servername = NAME): Promise<{ serial: string; socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca: ca.roots().join(""), ALPNProtocols: ["h2"] }, () => resolve({ serial: socket.getPeerCertificate().serialNumber, socket }));
    socket.once("error", reject);
  });
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zt-serving-cert-"));
  ca = await loadOrCreateCa({ dir, trustDomain: "cluster.local" });
  serving = await startServingCert(ca, { dns: [NAME], ips: [] }, 3000, pino({ level: "silent" }), { minRefreshMs: 200 });
  server = new grpc.Server();
  port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", serving.credentials, (e, p) => (e ? reject(e) : resolve(p))));
});
afterAll(async () => {
  serving?.close();
  server?.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

describe("serving certificate (grpc-js certificate provider, TLS on 127.0.0.1)", () => {
  test("the first certificate is served at once; it verifies against the mesh root for the Service's name and not for another", async () => {
    const first = await handshake();
    expect(first.serial.toLowerCase()).toBe(serving.serial().toLowerCase());
    expect(first.socket.authorized).toBe(true);
    first.socket.destroy();
    await expect(handshake("other.istio-system.svc")).rejects.toThrow(/altnames|does not match/i);
  });

  test("a re-issued certificate reaches new connections of the running server; an open connection keeps the one it started with", async () => {
    const before = await handshake();
    const old = serving.serial();
    await until("a re-issue", () => serving.serial() !== old);
    // The provider hands the new one to grpc-js synchronously; new handshakes get it.
    const after = await handshake();
    expect(after.serial.toLowerCase()).toBe(serving.serial().toLowerCase());
    expect(after.serial).not.toBe(before.serial);
    expect(after.socket.authorized).toBe(true);
    expect(before.socket.getPeerCertificate().serialNumber).toBe(before.serial);
    expect(before.socket.destroyed).toBe(false);
    before.socket.destroy();
    after.socket.destroy();
    // And a gRPC call over a new channel still works (UNIMPLEMENTED: the server has no services, but TLS and HTTP/2 were fine).
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca.roots().join(""))), { "grpc.ssl_target_name_override": NAME });
    const code = await new Promise<number>((resolve) =>
      client.makeUnaryRequest("/none.None/Call", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err?.code ?? grpc.status.OK)),
    );
    client.close();
    expect(code).toBe(grpc.status.UNIMPLEMENTED);
  });

  test("close() during a re-issue: the re-issue finishes, and no other is scheduled after it", async () => {
    // The mesh CA with its serving issuance held at a gate, to close() while one is under way.
    let calls = 0;
    let open: () => void = () => {};
    let gate: Promise<void> = Promise.resolve();
    const gated: BuiltinCa = { ...ca, issueServing: async (names, ttl) => (calls++, await gate, ca.issueServing(names, ttl)) };
    const s = await startServingCert(gated, { dns: [NAME], ips: [] }, 200, pino({ level: "silent" }), { minRefreshMs: 20 });
    gate = new Promise<void>((r) => (open = r));
    const first = s.serial();
    await until("a re-issue under way", () => calls === 2);
    s.close();
    open();
    await until("the re-issue done", () => s.serial() !== first);
    // Re-issues come every few hundred ms at this lifetime; none does after close().
    for (let i = 0; i < 80; i++) {
      await new Promise((r) => setTimeout(r, 20));
      expect(calls).toBe(2);
    }
  });
});
