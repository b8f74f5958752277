import { describe, expect, test } from "vitest";
import { until } from "./support/metrics.js";
import { captureWithApiSuite } from "./support/capture-api-suite.js";

// The emulated cluster with zt-controller: the API objects of capture-kube.test.ts, which
// only the controller follows; the agents take the mesh over delta xDS and their
// certificates from its CA, with a token of their own ztunnel pod. Needs root.
const cluster = captureWithApiSuite("controller");

describe("agents of zt-controller", () => {
  test("hold no CA key and certificates signed by the controller's root", async () => {
    const c = cluster();
    const { X509Certificate } = await import("node:crypto");
    const root = BigInt(`0x${new X509Certificate((await import("node:fs")).readFileSync(c.controller!.rootFile)).serialNumber}`).toString();
    for (const node of ["node-a", "node-b"]) {
      const d = JSON.parse((await c.agent(node).get("admin", "/config_dump")).body) as { certificates: { identity: string; status: string; rootCerts: { serialNumber: string }[] }[]; config: Record<string, unknown> };
      expect(d.config).toMatchObject({ discovery: "xds", caAddress: c.controller!.address });
      expect(d.certificates.length).toBeGreaterThan(0);
      for (const cert of d.certificates) expect({ identity: cert.identity, status: cert.status, root: cert.rootCerts.map((r) => r.serialNumber) }).toEqual({ identity: cert.identity, status: "available", root: [root] });
    }
    expect((await import("node:fs")).existsSync(`${c.dir}/no-ca-on-nodes`)).toBe(false);
  });

  test("a controller restart: the agents keep their mesh and certificates, reconnect, and traffic flows throughout", async () => {
    const c = cluster();
    const reconnects = async (node: string): Promise<number> => (JSON.parse((await c.agent(node).get("admin", "/config_dump")).body) as { source: { reconnects: number } }).source.reconnects;
    const before = await reconnects("node-a");
    await c.controller!.stop();
    // Down: the agents serve what they have.
    expect(await c.flow("sleep-a", c.pod("echo-b").ip, 8080)).toMatchObject({ ok: true, detail: "intact" });
    await c.controller!.restart();
    await until("node-a reconnected", () => reconnects("node-a"), (n) => n > before, 20_000);
    for (const node of ["node-a", "node-b"]) await until(`${node} ready again`, () => c.agent(node).get("readiness", "/healthz/ready"), (r) => r.status === 200, 20_000);
    expect(await c.flow("sleep-a", c.pod("echo-b").ip, 8080)).toMatchObject({ ok: true, detail: "intact" });
  }, 60_000);
});
