import net from "node:net";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createCertManager } from "@zt/identity";
import { createInboundServer, type InboundServer } from "./inbound.js";
import { createProxyListener } from "./listener.js";
import { testContext } from "./test-support/context.js";

// A destination whose certificate cannot be had (the CA is down): the HBONE client's
// connection is refused with one record (CERT_UNAVAILABLE), like any other refusal.
const IP = "127.67.1.10";
let ctx: Awaited<ReturnType<typeof testContext>>;
let inbound: InboundServer;
let listener: net.Server;

beforeAll(async () => {
  const downCa = createCertManager({ source: { sign: () => Promise.reject(new Error("the CA at ca.example:15012 is unreachable")) }, ttlMs: 3_600_000 });
  ctx = await testContext(
    `
workloads:
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${IP}"], protocol: HBONE, node: node-a}
`,
    { certs: downCa },
  );
  inbound = createInboundServer(ctx);
  listener = createProxyListener(ctx, "hbone", (s) => inbound.accept(s), inbound.unproven);
  await new Promise<void>((r) => listener.listen(15008, IP, () => r()));
});
afterAll(() => {
  inbound.close();
  listener.close();
  ctx.certs.close();
  ctx.dispose();
});

describe("inbound certificate fetch", () => {
  test("a failure is refused and recorded with CERT_UNAVAILABLE", async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const s = tls.connect({ host: IP, port: 15008, ALPNProtocols: ["h2"], rejectUnauthorized: false });
      s.on("error", () => resolve(true));
      s.once("close", () => resolve(true));
      s.once("secureConnect", () => resolve(false));
    });
    expect(closed).toBe(true);
    const rec = ctx.closed.at(-1);
    expect(rec).toMatchObject({ direction: "inbound", flag: "TLS_FAILURE", error: { code: "CERT_UNAVAILABLE" } });
    expect(rec?.error?.message).toContain("unreachable");
    expect(rec?.dst.workload).toBe("echo");
  });
});
