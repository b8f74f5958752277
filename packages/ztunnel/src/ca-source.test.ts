import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { selfSignedServingCert } from "@zt/harness";
import { createCertManager, loadOrCreateCa, type BuiltinCa } from "@zt/identity";
// Test-only, not exported: reached by path.
import { startFakeIstioCa } from "../../istio/src/test-support/fake-ca.js";
import { openCaSource } from "./ca-source.js";
import { loadConfig } from "./config.js";
import { createLogger } from "./logging.js";

// CA_ADDRESS set: the agent's certificates come from a remote Istio CA (here a FAKE one on
// 127.0.0.1 over gRPC+TLS, signing with the built-in CA's code). While it is down the
// certificates are pending/failed with CA_UNREACHABLE, and they arrive once it is up.
const ID = "spiffe://cluster.local/ns/default/sa/sleep";
const serving = selfSignedServingCert(["127.0.0.1"]);
let dir: string;
let meshCa: BuiltinCa;

function logs(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ logFormat: "json", logLevel: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c)) as Record<string, unknown>), cb()) }));
  return { lines, logger };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zt-ca-source-"));
  meshCa = await loadOrCreateCa({ dir: join(dir, "mesh-ca"), trustDomain: "cluster.local" });
  await writeFile(join(dir, "root-cert.pem"), meshCa.roots().join("") + serving.cert);
  await writeFile(join(dir, "istio-token"), "a-token");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the agent's CA choice", () => {
  test("by default the built-in CA signs, and the log says so once", async () => {
    const { lines, logger } = logs();
    const ca = await openCaSource(loadConfig({ CA_CERTS_DIR: join(dir, "cacerts") }), logger);
    const signed = await createCertManager({ source: ca.source, ttlMs: 3_600_000 }).fetch(ID);
    expect(signed.identity).toBe(ID);
    expect(lines.filter((l) => String(l["msg"]).startsWith("certificates from"))).toEqual([expect.objectContaining({ ca: "built-in" })]);
    ca.close();
  });

  test("CA_ADDRESS: a CA that is down leaves the certificate failed (CA_UNREACHABLE) and pending, without throwing; it is issued once the CA is up", async () => {
    const probe = await startFakeIstioCa(meshCa, serving);
    const port = probe.port;
    await probe.close();
    const { lines, logger } = logs();
    const config = loadConfig({ CA_ADDRESS: `127.0.0.1:${port}`, CA_ROOT_CA: join(dir, "root-cert.pem"), AUTH_TOKEN: join(dir, "istio-token"), CA_CERTS_DIR: join(dir, "unused") });
    const ca = await openCaSource(config, logger);
    expect(lines.filter((l) => String(l["msg"]).startsWith("certificates from"))).toEqual([expect.objectContaining({ ca: `127.0.0.1:${port}` })]);
    const certs = createCertManager({ source: ca.source, ttlMs: 3_600_000 });
    let server: Awaited<ReturnType<typeof startFakeIstioCa>> | undefined;
    try {
      certs.setWanted([ID]);
      for (let i = 0; i < 100 && certs.dump()[0]?.status !== "failed"; i++) await new Promise((r) => setTimeout(r, 50));
      expect(certs.dump()[0]).toMatchObject({ identity: ID, status: "failed", lastError: { code: "CA_UNREACHABLE", message: expect.stringContaining(`127.0.0.1:${port}`) } });
      expect(certs.pending()).toEqual([ID]);
      server = await startFakeIstioCa(meshCa, serving, port);
      for (let i = 0; i < 100 && !certs.ready(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(certs.ready()).toBe(true);
      expect(certs.dump()[0]).toMatchObject({ status: "available", certChain: [expect.objectContaining({ serialNumber: expect.any(String) })] });
    } finally {
      certs.close();
      ca.close();
      await server?.close();
    }
  });
});
