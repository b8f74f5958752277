import { spawn } from "node:child_process";
import type http from "node:http";
import https from "node:https";
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fakeKubeconfig } from "./kubeconfig.js";
import { startFakeKubeApi, type FakeKubeApi } from "./server.js";

// The FAKE API server speaks Kubernetes HTTP: proven with kubectl (an independent client)
// and with raw requests for what the agent relies on (pages, resumed watches, 410, bookmarks, auth).
const TOKEN = "reader-token";
let api: FakeKubeApi;
let dir: string;

beforeAll(async () => {
  api = await startFakeKubeApi({
    tokens: {
      [TOKEN]: { user: "system:serviceaccount:istio-system:ztunnel" },
      "no-policies": { user: "system:serviceaccount:default:limited", allow: (_verb, resource) => resource !== "authorizationpolicies" },
    },
    bookmarkMs: 100,
  });
  dir = mkdtempSync(path.join(tmpdir(), "zt-fake-kube-"));
});
afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

const pod = (name: string, namespace = "default", labels: Record<string, string> = {}): Record<string, unknown> => ({ metadata: { name, namespace, labels }, spec: { nodeName: "node-a" }, status: { phase: "Running", podIP: "10.244.1.5" } });

/** A GET over HTTPS trusting the fake's own CA; resolves with the response once its headers are in. */
function request(p: string, token: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = https.get(`${api.url}${p}`, { ca: api.ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.on("error", () => {}); // a dropped watch
      resolve(res);
    });
    req.on("error", reject);
  });
}

async function get(p: string, token = TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(p, token);
  let data = "";
  for await (const c of res) data += String(c);
  return { status: res.statusCode ?? 0, body: JSON.parse(data) as Record<string, unknown> };
}

/** A watch stream's events, as they arrive. */
async function watch(p: string): Promise<{ events: { type: string; object: Record<string, any> }[]; stop: () => void }> {
  const res = await request(p, TOKEN);
  expect(res.statusCode).toBe(200);
  const events: { type: string; object: Record<string, any> }[] = [];
  res.on("error", () => {});
  const lines = createInterface({ input: res });
  lines.on("error", () => {}); // readline passes on the input's error: a dropped watch
  lines.on("line", (l) => events.push(JSON.parse(l) as { type: string; object: Record<string, any> }));
  return { events, stop: () => res.destroy() };
}

async function until<T>(what: string, f: () => T, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("the fake Kubernetes API server", () => {
  test("kubectl get pods -A -w lists and then follows changes", async () => {
    const kubeconfig = path.join(dir, "kubeconfig");
    writeFileSync(kubeconfig, fakeKubeconfig(api.url, TOKEN, api.ca));
    api.store.apply("Pod", pod("before-watch", "ns-a"));
    const kubectl = spawn("kubectl", ["--kubeconfig", kubeconfig, "get", "pods", "-A", "-w", "--request-timeout=0"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    kubectl.stdout.on("data", (c: Buffer) => (out += c.toString()));
    kubectl.stderr.on("data", (c: Buffer) => (out += c.toString()));
    try {
      await until("the listed pod", () => out, (s) => /ns-a\s+before-watch/.test(s));
      await until("kubectl watching", () => api.watches(), (n) => n > 0);
      api.store.apply("Pod", pod("during-watch", "ns-b"));
      await until("the watched pod", () => out, (s) => /ns-b\s+during-watch/.test(s));
    } finally {
      kubectl.kill();
    }
    expect(out).not.toMatch(/error/i);
  });

  test("list pages share one snapshot; a page of a compacted snapshot is 410 Gone", async () => {
    for (let i = 0; i < 5; i++) api.store.apply("Pod", pod(`paged-${i}`, "paging"));
    const first = await get("/api/v1/namespaces/paging/pods?limit=2");
    const meta = first.body["metadata"] as { resourceVersion: string; continue: string; remainingItemCount: number };
    expect((first.body["items"] as unknown[]).length).toBe(2);
    expect(meta.remainingItemCount).toBe(3);
    api.store.apply("Pod", pod("paged-late", "paging"));
    const second = await get(`/api/v1/namespaces/paging/pods?limit=10&continue=${meta.continue}`);
    expect((second.body["items"] as { metadata: { name: string } }[]).map((p) => p.metadata.name)).toEqual(["paged-2", "paged-3", "paged-4"]);
    expect((second.body["metadata"] as { resourceVersion: string }).resourceVersion).toBe(meta.resourceVersion);
    const again = await get("/api/v1/namespaces/paging/pods?limit=2");
    api.store.compact();
    api.store.apply("Pod", pod("after-compaction", "paging"));
    const gone = await get(`/api/v1/namespaces/paging/pods?limit=2&continue=${(again.body["metadata"] as { continue: string }).continue}`);
    expect(gone).toMatchObject({ status: 410, body: { kind: "Status", code: 410, reason: "Expired" } });
  });

  test("a watch resumes after a resourceVersion, gets bookmarks, and 410 Gone (an ERROR event) for one compacted away", async () => {
    const listed = await get("/api/v1/pods");
    const rv = (listed.body["metadata"] as { resourceVersion: string }).resourceVersion;
    api.store.apply("Pod", pod("missed-while-away", "resume"));
    const w = await watch(`/api/v1/pods?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
    api.store.remove("Pod", "resume", "missed-while-away");
    const events = await until("the change, its deletion and a bookmark", () => w.events, (e) => e.some((x) => x.type === "BOOKMARK") && e.some((x) => x.type === "DELETED"));
    expect(events.filter((e) => e.type !== "BOOKMARK").map((e) => [e.type, e.object["metadata"].name])).toEqual([
      ["ADDED", "missed-while-away"],
      ["DELETED", "missed-while-away"],
    ]);
    expect(Number(events.find((e) => e.type === "BOOKMARK")!.object["metadata"].resourceVersion)).toBeGreaterThan(Number(rv));
    w.stop();
    api.store.compact();
    const old = await watch(`/api/v1/pods?watch=true&resourceVersion=${rv}`);
    const [err] = await until("the 410", () => old.events, (e) => e.length > 0);
    expect(err).toMatchObject({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } });
    old.stop();
  });

  test("label and field selectors; a namespaced path sees its namespace only", async () => {
    api.store.apply("Pod", pod("sel-a", "sel", { app: "a", tier: "web" }));
    api.store.apply("Pod", { ...pod("sel-b", "sel", { app: "b" }), spec: { nodeName: "node-b" } });
    const names = async (q: string): Promise<string[]> => ((await get(`/api/v1/namespaces/sel/pods?${q}`)).body["items"] as { metadata: { name: string } }[]).map((p) => p.metadata.name);
    expect(await names("labelSelector=app%3Da")).toEqual(["sel-a"]);
    expect(await names("labelSelector=app%20in%20(a,b),!tier")).toEqual(["sel-b"]);
    expect(await names("fieldSelector=spec.nodeName%3Dnode-b")).toEqual(["sel-b"]);
    expect((await get("/api/v1/namespaces/sel/pods?labelSelector=a%20b")).status).toBe(400);
  });

  test("bearer tokens: none or unknown is 401; a token without the right is 403 naming user, verb and resource", async () => {
    expect((await get("/api/v1/pods", "wrong")).status).toBe(401);
    const forbidden = await get("/apis/security.istio.io/v1/authorizationpolicies", "no-policies");
    expect(forbidden).toMatchObject({ status: 403, body: { reason: "Forbidden", code: 403 } });
    expect(forbidden.body["message"]).toBe('authorizationpolicies is forbidden: User "system:serviceaccount:default:limited" cannot list resource "authorizationpolicies" in API group "security.istio.io" at the cluster scope');
    expect((await get("/api/v1/pods", "no-policies")).status).toBe(200);
  });

  test("creationTimestamp: set at creation, kept across updates; one a test gives at creation is kept (a pod of a known age)", async () => {
    api.store.apply("Pod", pod("aged", "age"));
    const set = (await get("/api/v1/namespaces/age/pods/aged")).body["metadata"] as { creationTimestamp: string };
    expect(set.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    api.store.apply("Pod", { ...pod("aged", "age"), metadata: { name: "aged", namespace: "age", creationTimestamp: "2001-01-01T00:00:00Z" } });
    expect(((await get("/api/v1/namespaces/age/pods/aged")).body["metadata"] as { creationTimestamp: string }).creationTimestamp).toBe(set.creationTimestamp);
    api.store.apply("Pod", { ...pod("old", "age"), metadata: { name: "old", namespace: "age", creationTimestamp: "2001-01-01T00:00:00Z" } });
    expect(((await get("/api/v1/namespaces/age/pods/old")).body["metadata"] as { creationTimestamp: string }).creationTimestamp).toBe("2001-01-01T00:00:00Z");
  });

  test("dropping connections resets open watches", async () => {
    const w = await watch("/api/v1/pods?watch=true");
    await until("the watch open", () => api.watches(), (n) => n > 0);
    api.dropConnections();
    await until("no watch open", () => api.watches(), (n) => n === 0);
    w.stop();
  });

  test("TokenReview: 201 naming the minted token's service account and pod for its audience; authenticated false (with the reason) otherwise; 403 without create on tokenreviews", async () => {
    const reviewer = "reviewer-token";
    const server = await startFakeKubeApi({ tokens: { [reviewer]: { user: "system:serviceaccount:istio-system:zt-controller", allow: (verb, resource) => verb === "create" && resource === "tokenreviews" }, [TOKEN]: { user: "reader" } } });
    const post = (token: string, body: unknown): Promise<{ status: number; body: Record<string, any> }> =>
      new Promise((resolve, reject) => {
        const data = JSON.stringify(body);
        const headers = { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": Buffer.byteLength(data) };
        const req = https.request(`${server.url}/apis/authentication.k8s.io/v1/tokenreviews`, { method: "POST", ca: server.ca, headers }, (res) => {
          let text = "";
          res.on("data", (c) => (text += String(c)));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, any> }));
        });
        req.on("error", reject);
        req.end(data);
      });
    const review = (token: string, audiences = ["istio-ca"]) => ({ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences } });
    try {
      const uid = server.store.apply("Pod", { metadata: { name: "sleep-x", namespace: "default" }, spec: {} }).metadata.uid!;
      const sa = server.serviceAccountTokens.mint({ namespace: "default", serviceAccount: "sleep", pod: { name: "sleep-x", uid } });
      const ok = await post(reviewer, review(sa));
      expect(ok.status).toBe(201);
      expect(ok.body["status"]).toMatchObject({
        authenticated: true,
        audiences: ["istio-ca"],
        user: { username: "system:serviceaccount:default:sleep", extra: { "authentication.kubernetes.io/pod-name": ["sleep-x"], "authentication.kubernetes.io/pod-uid": [uid] } },
      });
      const wrong = await post(reviewer, review(sa, ["vault"]));
      expect(wrong.status).toBe(201);
      expect(wrong.body["status"]).toMatchObject({ authenticated: false, error: expect.stringContaining("audiences") });
      const expired = server.serviceAccountTokens.mint({ namespace: "default", serviceAccount: "sleep", expiresAt: new Date(Date.now() - 1) });
      expect((await post(reviewer, review(expired))).body["status"]).toMatchObject({ authenticated: false, error: expect.stringContaining("expired") });
      server.store.remove("Pod", "default", "sleep-x");
      expect((await post(reviewer, review(sa))).body["status"]).toMatchObject({ authenticated: false, error: expect.stringContaining("not found") });
      expect((await post(TOKEN, review(sa))).status).toBe(403);
      expect((await post(reviewer, { kind: "Pod" })).status).toBe(400);
    } finally {
      await server.close();
    }
  });

  test("ConfigMaps: create (201, 409 AlreadyExists), replace (200, 404 NotFound, 409 Conflict when stale), 403 without create/update; read and watched like the rest", async () => {
    const writer = "writer-token";
    const server = await startFakeKubeApi({ tokens: { [writer]: { user: "system:serviceaccount:istio-system:zt-controller", allow: (verb, resource, ns) => ["get", "list", "watch"].includes(verb) || (resource === "configmaps" && ns === "istio-system") }, [TOKEN]: { user: "reader" } } });
    const send = (method: string, p: string, token: string, body: unknown): Promise<{ status: number; body: Record<string, any> }> =>
      new Promise((resolve, reject) => {
        const data = JSON.stringify(body);
        const headers = { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": Buffer.byteLength(data) };
        const req = https.request(`${server.url}${p}`, { method, ca: server.ca, headers }, (res) => {
          let text = "";
          res.on("data", (c) => (text += String(c)));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, any> }));
        });
        req.on("error", reject);
        req.end(data);
      });
    const cm = (data: Record<string, string>, extra: Record<string, unknown> = {}) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "root", namespace: "istio-system", ...extra }, data });
    const coll = "/api/v1/namespaces/istio-system/configmaps";
    try {
      expect(await send("PUT", `${coll}/root`, writer, cm({ a: "1" }))).toMatchObject({ status: 404, body: { reason: "NotFound", code: 404, message: 'configmaps "root" not found' } });
      const created = await send("POST", coll, writer, cm({ a: "1" }));
      expect(created).toMatchObject({ status: 201, body: { kind: "ConfigMap", apiVersion: "v1", metadata: { name: "root", namespace: "istio-system" }, data: { a: "1" } } });
      expect(await send("POST", coll, writer, cm({ a: "2" }))).toMatchObject({ status: 409, body: { reason: "AlreadyExists", message: 'configmaps "root" already exists' } });
      const replaced = await send("PUT", `${coll}/root`, writer, cm({ a: "3" }));
      expect(replaced).toMatchObject({ status: 200, body: { data: { a: "3" }, metadata: { uid: created.body["metadata"].uid } } });
      expect(Number(replaced.body["metadata"].resourceVersion)).toBeGreaterThan(Number(created.body["metadata"].resourceVersion));
      expect((await send("PUT", `${coll}/root`, writer, cm({ a: "4" }, { resourceVersion: created.body["metadata"].resourceVersion }))).body).toMatchObject({ reason: "Conflict", code: 409 });
      expect((await send("PUT", `${coll}/other`, writer, cm({ a: "5" }))).status).toBe(400);
      const denied = await send("POST", coll, TOKEN, cm({ a: "6" }, { name: "x" }));
      expect(denied).toMatchObject({ status: 403, body: { reason: "Forbidden", message: 'configmaps is forbidden: User "reader" cannot create resource "configmaps" in API group "" in the namespace "istio-system"' } });
      expect((await send("PUT", `${coll}/root`, TOKEN, cm({ a: "7" }))).body["message"]).toContain('cannot update resource "configmaps"');
      expect((await send("POST", "/api/v1/namespaces/default/configmaps", writer, { metadata: { name: "y" }, data: {} })).status).toBe(403);
      expect((await send("POST", "/api/v1/namespaces/default/pods", writer, { metadata: { name: "p" } })).status).toBe(405);
      const got = await send("GET", `${coll}/root`, TOKEN, {});
      expect(got).toMatchObject({ status: 200, body: { data: { a: "3" } } });
      expect(server.store.get(server.store.resource("ConfigMap"), "istio-system", "root")?.["data"]).toEqual({ a: "3" });
    } finally {
      await server.close();
    }
  });

  test("kubectl lists ConfigMaps (in API discovery as configmaps, short name cm)", async () => {
    api.store.apply("ConfigMap", { metadata: { name: "listed", namespace: "cms" }, data: { k: "v" } });
    const cfg = path.join(dir, "kubeconfig-cm");
    writeFileSync(cfg, fakeKubeconfig(api.url, TOKEN, api.ca));
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn("kubectl", ["--kubeconfig", cfg, "get", "cm", "-n", "cms", "-o", "jsonpath={.items[*].data.k}"]);
      let s = "";
      p.stdout.on("data", (c) => (s += String(c)));
      p.stderr.on("data", (c) => (s += String(c)));
      p.on("error", reject);
      p.on("close", () => resolve(s));
    });
    expect(out).toBe("v");
  });
});
