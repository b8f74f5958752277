import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { fakeKubeconfig, selfSignedServingCert, startFakeKubeApi, type FakeKubeApi, type ServingCert } from "@zt/harness";
import { KubeConfig, startReflector, type Reflector, type SyncStatus } from "@zt/kube";

// The reflector (list + watch) with @kubernetes/client-node against the FAKE API server,
// over HTTPS with a bearer token, as an agent in a cluster talks to its API server.
const TOKEN = "ztunnel-token";
const PODS = { plural: "pods", group: "", path: "/api/v1/pods" };
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function fake(port?: number, serving?: ServingCert): Promise<FakeKubeApi> {
  const api = await startFakeKubeApi({
    ...(port ? { port } : {}),
    ...(serving ? { serving } : {}),
    bookmarkMs: 100,
    tokens: {
      [TOKEN]: { user: "system:serviceaccount:istio-system:ztunnel" },
      "no-policies": { user: "system:serviceaccount:istio-system:ztunnel", allow: (_v, resource) => resource !== "authorizationpolicies" },
    },
  });
  cleanup.push(() => api.close());
  return api;
}
function config(server: string, ca: string | undefined, token = TOKEN): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(fakeKubeconfig(server, token, ca));
  return kc;
}
const pod = (name: string, ns = "default", phase = "Running"): Record<string, unknown> => ({ metadata: { name, namespace: ns }, status: { phase } });

/** A reflector whose handlers keep the current objects by "ns/name". */
function follow(kc: KubeConfig, ref = PODS, opts = {}): { objects: Map<string, { status?: { phase?: string } }>; replaces: number; events: string[]; statuses: SyncStatus[]; r: Reflector } {
  const out = { objects: new Map<string, { status?: { phase?: string } }>(), replaces: 0, events: [] as string[], statuses: [] as SyncStatus[], r: undefined as unknown as Reflector };
  type O = { metadata?: { name?: string; namespace?: string }; status?: { phase?: string } };
  const key = (o: O): string => `${o.metadata?.namespace}/${o.metadata?.name}`;
  out.r = startReflector<O>(
    kc,
    ref,
    {
      replace: (items) => {
        out.replaces++;
        out.objects = new Map(items.map((i) => [key(i), i]));
      },
      event: (type, o) => {
        out.events.push(`${type} ${key(o)}`);
        if (type === "DELETED") out.objects.delete(key(o));
        else out.objects.set(key(o), o);
      },
      status: (s) => out.statuses.push(s),
    },
    { backoffInitialMs: 50, backoffMaxMs: 400, pageSize: 2, ...opts },
  );
  cleanup.push(() => out.r.stop());
  return out;
}

async function until<T>(what: string, f: () => T, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("a resource followed from the API server", () => {
  test("lists in pages, then watches with bookmarks from the list's resourceVersion: every change arrives", async () => {
    const api = await fake();
    for (let i = 0; i < 5; i++) api.store.apply("Pod", pod(`p${i}`));
    const f = follow(config(api.url, api.ca));
    await until("synced", () => f.r.status(), (s) => s.synced && s.state === "watching");
    expect([...f.objects.keys()].sort()).toEqual(["default/p0", "default/p1", "default/p2", "default/p3", "default/p4"]);
    expect(api.requests.filter((r) => r.includes("limit=2"))).toHaveLength(3);
    api.store.apply("Pod", pod("p5"));
    api.store.apply("Pod", pod("p0", "default", "Failed"));
    api.store.remove("Pod", "default", "p1");
    await until("the changes", () => f.events, (e) => e.length === 3);
    expect(f.events).toEqual(["ADDED default/p5", "MODIFIED default/p0", "DELETED default/p1"]);
    expect(api.requests.some((r) => r.includes("watch=true") && r.includes("allowWatchBookmarks=true"))).toBe(true);
    // Bookmarks move the resourceVersion on with no change to pods.
    const rv = Number(f.r.status().resourceVersion);
    api.store.apply("Service", { metadata: { name: "unrelated" } });
    await until("a bookmark past the service change", () => Number(f.r.status().resourceVersion), (v) => v > rv + 0);
  });

  test("a dropped watch reconnects from its resourceVersion: changes made meanwhile arrive, with no relist", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("a"));
    const f = follow(config(api.url, api.ca));
    await until("watching", () => api.watches(), (n) => n === 1);
    api.latencyMs = 200;
    api.dropConnections();
    api.store.apply("Pod", pod("while-away"));
    api.store.remove("Pod", "default", "a");
    api.latencyMs = 0;
    await until("the missed changes", () => f.events, (e) => e.length === 2);
    expect(f.events).toEqual(["ADDED default/while-away", "DELETED default/a"]);
    expect(f.replaces).toBe(1);
    expect(f.r.status()).toMatchObject({ relists: 0, state: "watching" });
    expect(f.r.status().reconnects).toBeGreaterThanOrEqual(1);
  });

  test("410 Gone (the history was compacted while away): a relist, which drops what was deleted meanwhile", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("stays"));
    api.store.apply("Pod", pod("goes"));
    const f = follow(config(api.url, api.ca));
    await until("watching", () => api.watches(), (n) => n === 1);
    api.latencyMs = 200;
    api.dropConnections();
    api.store.remove("Pod", "default", "goes");
    api.store.apply("Pod", pod("new"));
    api.store.compact();
    api.latencyMs = 0;
    await until("relisted", () => f.r.status(), (s) => s.relists === 1 && s.state === "watching");
    expect([...f.objects.keys()].sort()).toEqual(["default/new", "default/stays"]);
    expect(f.replaces).toBe(2);
  });

  test("an API server down at start: retried with backoff, saying why; synced once it answers", async () => {
    const port = await freePort();
    const serving = selfSignedServingCert();
    const f = follow(config(`https://127.0.0.1:${port}`, serving.cert));
    await until("a retry", () => f.r.status(), (s) => s.state === "retrying");
    expect(f.r.status().synced).toBe(false);
    expect(f.r.status().lastError).toMatchObject({ code: "KUBE_UNREACHABLE" });
    expect(f.r.status().lastError!.message).toMatch(/^list pods: the API server is unreachable: .*ECONNREFUSED.*; retrying in \d+ ms$/);
    const api = await fake(port, serving);
    api.store.apply("Pod", pod("late"));
    await until("synced", () => f.r.status(), (s) => s.synced && s.state === "watching");
    expect([...f.objects.keys()]).toEqual(["default/late"]);
    expect(f.r.status().lastError).toBeNull();
  });

  test("a CRD the API server does not serve is an empty synced list, asked for again; its objects come once it is there", async () => {
    const api = await fake();
    api.notServed.add("authorizationpolicies");
    const ref = { plural: "authorizationpolicies", group: "security.istio.io", path: "/apis/security.istio.io/v1/authorizationpolicies", optional: true };
    const f = follow(config(api.url, api.ca), ref, { backoffMaxMs: 200 });
    await until("synced, empty", () => f.r.status(), (s) => s.synced);
    expect(f.objects.size).toBe(0);
    expect(f.r.status().lastError!.message).toMatch(/does not serve it \(is its CustomResourceDefinition installed\?\)/);
    api.store.apply("AuthorizationPolicy", { metadata: { name: "p", namespace: "default" }, spec: {} });
    api.notServed.delete("authorizationpolicies");
    await until("the policy", () => f.objects.size, (n) => n === 1);
    await until("watching", () => f.r.status(), (s) => s.state === "watching" && s.lastError === null);
  });

  test("an answer that is no list is an error, never an empty list that would wipe the state", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("kept"));
    api.override = (p) => (p.startsWith("/api/v1/pods?limit") ? { status: 200, body: "{}" } : undefined);
    const f = follow(config(api.url, api.ca));
    await until("the error", () => f.r.status().lastError, (e) => e !== null);
    expect(f.r.status()).toMatchObject({ synced: false, lastError: { code: "KUBE_REQUEST_FAILED" } });
    expect(f.r.status().lastError!.message).toMatch(/^list pods: the answer is not a list \(no items\)/);
    expect(f.replaces).toBe(0);
    api.override = undefined;
    await until("synced", () => f.r.status(), (s) => s.synced && s.lastError === null);
    expect([...f.objects.keys()]).toEqual(["default/kept"]);
  });

  test("a watch line that is no JSON (garbage mid-stream): the objects stay, lastError says so, the watch resumes and every later change arrives", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("kept"));
    const f = follow(config(api.url, api.ca));
    await until("watching", () => api.watches(), (n) => n === 1);
    api.corruptWatches("garbage");
    api.store.apply("Pod", pod("after"));
    await until("the change after it", () => f.objects.has("default/after"), (v) => v);
    const reported = await until("the error reported", () => f.statuses.find((s) => s.lastError !== null), (s) => s !== undefined);
    expect(reported!.lastError).toMatchObject({ code: "KUBE_REQUEST_FAILED" });
    expect(reported!.lastError!.message).toMatch(/^watch pods: the API server sent a line that is no watch event \("<html><body>502 Bad Gateway<\/body><\/html>"\); resuming from resourceVersion \d+/);
    expect([...f.objects.keys()].sort()).toEqual(["default/after", "default/kept"]);
    expect(f.events).toEqual(["ADDED default/after"]);
    expect(f.replaces).toBe(1);
    expect(f.r.status()).toMatchObject({ state: "watching", relists: 0, lastError: null });
    expect(f.r.status().reconnects).toBeGreaterThanOrEqual(1);
  });

  test("an event line cut short: that event is not lost, the watch resumes from the resourceVersion before it; nothing arrives twice", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("kept"));
    const f = follow(config(api.url, api.ca));
    await until("watching", () => api.watches(), (n) => n === 1);
    api.corruptWatches("truncate-next");
    api.store.apply("Pod", pod("cut"));
    api.store.apply("Pod", pod("next"));
    api.store.remove("Pod", "default", "kept");
    await until("every change", () => f.events.length, (n) => n >= 3);
    expect(f.events).toEqual(["ADDED default/cut", "ADDED default/next", "DELETED default/kept"]);
    expect([...f.objects.keys()].sort()).toEqual(["default/cut", "default/next"]);
    expect(f.statuses.some((s) => s.lastError?.code === "KUBE_REQUEST_FAILED" && /a line that is no watch event \("\{/.test(s.lastError.message))).toBe(true);
    expect(f.r.status()).toMatchObject({ state: "watching", relists: 0 });
  });

  test("garbage on a watch whose history is gone meanwhile: a relist, so nothing is lost there either", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("goes"));
    const f = follow(config(api.url, api.ca));
    await until("watching", () => api.watches(), (n) => n === 1);
    api.latencyMs = 200;
    api.corruptWatches("truncate-next");
    api.store.apply("Pod", pod("cut"));
    api.store.remove("Pod", "default", "goes");
    api.store.compact();
    api.latencyMs = 0;
    await until("relisted", () => f.r.status(), (s) => s.relists === 1 && s.state === "watching");
    expect([...f.objects.keys()]).toEqual(["default/cut"]);
    expect(f.replaces).toBe(2);
  });

  test("a watch the API server takes but never answers is given up after the request timeout, and asked again", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("kept"));
    const f = follow(config(api.url, api.ca), PODS, { requestTimeoutMs: 300 });
    await until("watching", () => api.watches(), (n) => n === 1);
    api.latencyMs = 2000;
    api.dropConnections();
    // (The dropped stream may be reported first: "the watch stream was cut off".)
    const e = await until("the timeout reported", () => f.r.status().lastError, (x) => /no answer/.test(x?.message ?? ""));
    expect(e).toMatchObject({ code: "KUBE_UNREACHABLE" });
    expect(e!.message).toMatch(/^watch pods: the API server is unreachable: no answer within 300 ms \(ETIMEDOUT\); retrying in \d+ ms$/);
    expect([...f.objects.keys()]).toEqual(["default/kept"]);
    api.latencyMs = 0;
    api.store.apply("Pod", pod("after"));
    await until("resumed", () => f.objects.has("default/after") && f.r.status().lastError === null, (v) => v);
    expect(f.replaces).toBe(1);
  });

  test("a handler that throws on a watched event does not take the reflector down: reported, then a relist sets it right", async () => {
    const api = await fake();
    api.store.apply("Pod", pod("kept"));
    const objects = new Map<string, unknown>();
    let thrown = 0;
    const statuses: SyncStatus[] = [];
    const r = startReflector<{ metadata?: { name?: string } }>(
      config(api.url, api.ca),
      PODS,
      {
        replace: (items) => {
          objects.clear();
          for (const i of items) objects.set(i.metadata?.name ?? "", i);
        },
        event: (type, o) => {
          if (o.metadata?.name === "boom" && thrown++ === 0) throw new Error("boom");
          if (type === "DELETED") objects.delete(o.metadata?.name ?? "");
          else objects.set(o.metadata?.name ?? "", o);
        },
        status: (s) => statuses.push(s),
      },
      { backoffInitialMs: 50, backoffMaxMs: 400 },
    );
    cleanup.push(() => r.stop());
    await until("watching", () => api.watches(), (n) => n === 1);
    api.store.apply("Pod", pod("boom"));
    await until("boom, after a relist", () => objects.has("boom") && r.status().state === "watching", (v) => v);
    expect([...objects.keys()].sort()).toEqual(["boom", "kept"]);
    expect(statuses.some((s) => s.lastError?.message.startsWith("watch pods: an event could not be taken (boom); relisting"))).toBe(true);
    expect(r.status().relists).toBe(1);
  });

  test("credentials that expire while watching: reported as KUBE_UNAUTHORIZED, the last good objects kept; accepted again, it resumes", async () => {
    const tokens: Record<string, { user: string }> = { rotating: { user: "system:serviceaccount:istio-system:ztunnel" } };
    const api = await startFakeKubeApi({ tokens, bookmarkMs: 100 });
    cleanup.push(() => api.close());
    api.store.apply("Pod", pod("kept"));
    const f = follow(config(api.url, api.ca, "rotating"));
    await until("watching", () => f.r.status(), (s) => s.state === "watching");
    delete tokens["rotating"];
    api.dropConnections();
    await until("refused", () => f.r.status().lastError, (e) => e?.code === "KUBE_UNAUTHORIZED");
    expect([...f.objects.keys()]).toEqual(["default/kept"]);
    expect(f.r.status().synced).toBe(true);
    tokens["rotating"] = { user: "system:serviceaccount:istio-system:ztunnel" };
    api.store.apply("Pod", pod("after"));
    await until("resumed", () => f.objects.has("default/after") && f.r.status().lastError === null, (v) => v);
    expect(f.replaces).toBe(1);
  });

  test("credentials: a wrong token is KUBE_UNAUTHORIZED; a missing right is KUBE_FORBIDDEN by verb and resource", async () => {
    const api = await fake();
    const wrong = follow(config(api.url, api.ca, "stale-token"));
    await until("refused", () => wrong.r.status().lastError, (e) => e !== null);
    expect(wrong.r.status().lastError).toMatchObject({ code: "KUBE_UNAUTHORIZED" });
    expect(wrong.r.status().lastError!.message).toMatch(/^list pods: 401 Unauthorized/);
    const limited = follow(config(api.url, api.ca, "no-policies"), { plural: "authorizationpolicies", group: "security.istio.io", path: "/apis/security.istio.io/v1/authorizationpolicies" });
    await until("forbidden", () => limited.r.status().lastError, (e) => e !== null);
    expect(limited.r.status().lastError).toMatchObject({ code: "KUBE_FORBIDDEN" });
    expect(limited.r.status().lastError!.message).toMatch(/^list authorizationpolicies: 403 Forbidden: authorizationpolicies is forbidden: User "system:serviceaccount:istio-system:ztunnel" cannot list resource "authorizationpolicies" in API group "security.istio.io" at the cluster scope/);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
