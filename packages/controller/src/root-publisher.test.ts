import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fakeKubeconfig, startFakeKubeApi, type FakeKubeApi } from "@zt/harness";
import { KubeConfig } from "@zt/kube";
import { publishRoot, ROOT_CONFIGMAP } from "./root-publisher.js";

// The root publisher against the FAKE Kubernetes API server (real HTTPS on 127.0.0.1,
// ConfigMap create and replace as the API server answers them).
const WRITER = "writer-token";
const READER = "reader-token";
const NS = "istio-system";
const ROOT = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n";
const logger = pino({ level: "silent" });
let api: FakeKubeApi;

const kc = (token: string): KubeConfig => {
  const k = new KubeConfig();
  k.loadFromString(fakeKubeconfig(api.url, token, api.ca));
  return k;
};
const configMap = () => api.store.get(api.store.resource("ConfigMap"), NS, ROOT_CONFIGMAP);
const writes = (): string[] => api.requests.filter((r) => /^(PUT|POST) .*\/configmaps/.test(r));

beforeAll(async () => {
  api = await startFakeKubeApi({
    tokens: {
      [WRITER]: { user: "system:serviceaccount:istio-system:zt-controller", allow: (verb, resource, ns) => resource === "configmaps" && ns === NS && ["create", "update", "get"].includes(verb) },
      [READER]: { user: "system:serviceaccount:istio-system:reader" },
    },
  });
});
afterAll(async () => {
  await api?.close();
});

describe("root publisher (FAKE API server over HTTPS on 127.0.0.1)", () => {
  test("creates the ConfigMap when missing (replace 404, then create), and a publish after it exists replaces it (same object, new data)", async () => {
    api.requests.length = 0;
    const first = await publishRoot(kc(WRITER), NS, ROOT, logger);
    first.close();
    expect(first.status()).toEqual({ published: true, lastError: null, attempts: 1, restored: 0 });
    expect(writes()).toEqual([`PUT /api/v1/namespaces/${NS}/configmaps/${ROOT_CONFIGMAP}`, `POST /api/v1/namespaces/${NS}/configmaps`]);
    const created = configMap()!;
    expect(created["data"]).toEqual({ "root-cert.pem": ROOT });
    expect(created.metadata.labels).toEqual({ "istio.io/config": "true" });

    api.requests.length = 0;
    const rotated = ROOT.replace("root", "root-2");
    const second = await publishRoot(kc(WRITER), NS, rotated, logger);
    second.close();
    expect(second.status()).toMatchObject({ published: true, attempts: 1 });
    expect(writes()).toEqual([`PUT /api/v1/namespaces/${NS}/configmaps/${ROOT_CONFIGMAP}`]);
    const replaced = configMap()!;
    expect(replaced["data"]).toEqual({ "root-cert.pem": rotated });
    expect(replaced.metadata.uid).toBe(created.metadata.uid);
    expect(Number(replaced.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
  });

  test("deleted, or edited, the ConfigMap is put back at the next check, as istiod does; nothing is written while it is intact", async () => {
    const p = await publishRoot(kc(WRITER), NS, ROOT, logger, { checkMs: 50 });
    try {
      const until = async (what: string, ok: () => boolean): Promise<void> => {
        for (let i = 0; i < 400 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
        if (!ok()) throw new Error(`timed out: ${what}`);
      };
      api.store.remove("ConfigMap", NS, ROOT_CONFIGMAP);
      expect(configMap()).toBeUndefined();
      await until("recreated", () => configMap()?.["data"] !== undefined);
      expect(configMap()!["data"]).toEqual({ "root-cert.pem": ROOT });
      api.store.apply("ConfigMap", { metadata: { name: ROOT_CONFIGMAP, namespace: NS }, data: { "root-cert.pem": "someone else's root" } });
      await until("restored", () => (configMap()?.["data"] as Record<string, string> | undefined)?.["root-cert.pem"] === ROOT);
      expect(p.status()).toMatchObject({ published: true, restored: 2, lastError: null });
      api.requests.length = 0;
      await new Promise((r) => setTimeout(r, 300));
      expect(writes()).toEqual([]);
      expect(api.requests.filter((r) => r.startsWith("GET ")).length).toBeGreaterThan(0);
    } finally {
      p.close();
    }
  });

  test("a refused publish (403) is retried until it succeeds, the API server's reason in status(); close() stops the retries", async () => {
    let allowed = false;
    const server = await startFakeKubeApi({ tokens: { [WRITER]: { user: "system:serviceaccount:istio-system:zt-controller", allow: (verb, resource) => allowed && resource === "configmaps" && verb !== "delete" } } });
    const k = new KubeConfig();
    k.loadFromString(fakeKubeconfig(server.url, WRITER, server.ca));
    const tries = (): number => server.requests.filter((r) => r.startsWith("PUT ")).length;
    try {
      const p = await publishRoot(k, NS, ROOT, logger, { retryBaseMs: 10 });
      expect(p.status()).toMatchObject({ published: false, attempts: 1 });
      expect(p.status().lastError).toBe(`cannot publish ConfigMap ${NS}/${ROOT_CONFIGMAP}: HTTP 403: configmaps "${ROOT_CONFIGMAP}" is forbidden: User "system:serviceaccount:istio-system:zt-controller" cannot update resource "configmaps" in API group "" in the namespace "${NS}"`);
      for (let i = 0; i < 400 && p.status().attempts < 3; i++) await new Promise((r) => setTimeout(r, 10));
      expect(p.status().attempts).toBeGreaterThanOrEqual(3);
      allowed = true;
      for (let i = 0; i < 400 && !p.status().published; i++) await new Promise((r) => setTimeout(r, 10));
      expect(p.status()).toMatchObject({ published: true, lastError: null });
      expect(server.store.get(server.store.resource("ConfigMap"), NS, ROOT_CONFIGMAP)?.["data"]).toEqual({ "root-cert.pem": ROOT });
      p.close();

      allowed = false;
      const stopped = await publishRoot(k, NS, ROOT, logger, { retryBaseMs: 10 });
      expect(stopped.status().published).toBe(false);
      for (let i = 0; i < 400 && stopped.status().attempts < 2; i++) await new Promise((r) => setTimeout(r, 10));
      stopped.close();
      // An attempt may be on the wire when close() is called; after it, none.
      await new Promise((r) => setTimeout(r, 50));
      const after = tries();
      const attempts = stopped.status().attempts;
      await new Promise((r) => setTimeout(r, 300));
      expect(tries()).toBe(after);
      expect(stopped.status().attempts).toBe(attempts);
    } finally {
      await server.close();
    }
  });
});
