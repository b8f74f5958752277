/**
 * A FAKE Kubernetes API server for tests: real Kubernetes HTTP on the read side (what
 * discovery and `kubectl get -w` use), objects kept in memory and changed in-process by the
 * test (the harness plays kubelet and EndpointSlice controller). Serves: API discovery
 * (/api, /apis, resource lists, /version); get; list with resourceVersion, limit/continue
 * (pages of one snapshot; 410 Gone once it is compacted); chunked watch streams of JSON
 * events from a resourceVersion, with bookmarks (allowWatchBookmarks) and 410 Gone (an
 * ERROR event) for one compacted away; label and field selectors; bearer tokens (401,
 * 403 naming the verb and resource); TokenReview for the service-account tokens a test mints
 * (token-review.ts). For faults: drop every connection, answer slowly,
 * answer 404 for a resource, answer a request with the test's own reply, or corrupt the
 * open watch streams (a line that is no JSON, or the next event cut short).
 * Writes: create (POST) and replace (PUT) of ConfigMaps (writes.ts), TokenReview.
 * Not served: other writes (patch, delete, other resources), server-side tables, protobuf.
 */
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { apiVersionOf, FakeStore, RESOURCES, type Change, type KubeObject, type Resource } from "./store.js";
import { fieldSelector, labelSelector, SelectorError, type Selector } from "./selectors.js";
import { selfSignedServingCert, type ServingCert } from "./tls.js";
import { answerTokenReview, FakeServiceAccountTokens } from "./token-review.js";
import { json, status, statusBody, text } from "./reply.js";
import { serveWrite, WRITABLE } from "./writes.js";

const TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews";

export interface FakeKubeToken {
  /** The user the API server names in a 403 (e.g. system:serviceaccount:istio-system:ztunnel). */
  readonly user: string;
  /** Whether `verb` (get, list, watch; create, update for configmaps; create for tokenreviews) on `resource` (plural) is allowed; default: all reads, no writes. */
  readonly allow?: (verb: string, resource: string, namespace: string | undefined) => boolean;
}

export interface FakeKubeApiOptions {
  readonly host?: string;
  readonly port?: number;
  /** Listen on this unix socket instead (clients reach it through a forwarder); `url` is then `advertise`. */
  readonly socketPath?: string;
  readonly advertise?: string;
  /** Bearer token -> who it is. A request without a known token gets 401. */
  readonly tokens: Readonly<Record<string, FakeKubeToken>>;
  /** How often a watch with allowWatchBookmarks gets a BOOKMARK (default 1 s; the real one is about a minute). */
  readonly bookmarkMs?: number;
  /** Serve HTTPS with a self-signed certificate (`ca`), as a cluster does; default true. Clients send tokens only over TLS. */
  readonly tls?: boolean;
  /** The serving certificate to use (a test that needs its CA before the server is up); default: a new one. */
  readonly serving?: ServingCert;
}

export interface FakeKubeApi {
  readonly url: string;
  /** PEM of the serving certificate (its own CA), for the client's trust; undefined without TLS. */
  readonly ca: string | undefined;
  readonly store: FakeStore;
  /** Service-account tokens for TokenReview: mint one per test caller. */
  readonly serviceAccountTokens: FakeServiceAccountTokens;
  /** Delay before every answer (ms); 0 by default. */
  latencyMs: number;
  /** Resources (plural) answered 404, as for a CRD that is not installed. */
  readonly notServed: Set<string>;
  /** For faults: an answer of its own for a request (path with query), instead of the real one. */
  override: ((path: string) => { status: number; body: string } | undefined) | undefined;
  /** Reset every open connection, watches included (RST). */
  dropConnections(): void;
  /**
   * Corrupt every open watch stream, which stays open: "garbage" writes a line that is no
   * JSON now (as a proxy in the way might); "truncate-next" writes the next event of each
   * (not a bookmark) cut short, a line of half its JSON, then goes on with the events after it.
   */
  corruptWatches(how?: "garbage" | "truncate-next"): void;
  /** Requests served so far, as "VERB path?query" (most recent last). */
  readonly requests: string[];
  /** Open watch streams right now. */
  watches(): number;
  close(): Promise<void>;
}

interface Paged {
  readonly epoch: number;
  readonly rv: number;
  readonly items: KubeObject[];
}

export async function startFakeKubeApi(o: FakeKubeApiOptions): Promise<FakeKubeApi> {
  const store = new FakeStore();
  const sockets = new Set<net.Socket>();
  const openWatches = new Set<http.ServerResponse>();
  /** Open watches whose next event is written cut short. */
  const truncateNext = new Set<http.ServerResponse>();
  const snapshots = new Map<string, Paged>();
  let snapshotId = 0;
  const requests: string[] = [];
  const bookmarkMs = o.bookmarkMs ?? 1000;
  const serving = o.tls === false ? undefined : (o.serving ?? selfSignedServingCert([o.host ?? "127.0.0.1"]));
  const api: FakeKubeApi = {
    url: "",
    ca: serving?.cert,
    store,
    serviceAccountTokens: new FakeServiceAccountTokens(store),
    latencyMs: 0,
    notServed: new Set(),
    override: undefined,
    requests,
    dropConnections: () => {
      for (const s of sockets) {
        // A TCP socket is reset; a unix one (socketPath) can only be closed.
        if (o.socketPath) s.destroy();
        else s.resetAndDestroy();
      }
    },
    corruptWatches: (how = "garbage") => {
      for (const res of openWatches) {
        if (how === "garbage") res.write("<html><body>502 Bad Gateway</body></html>\n");
        else truncateNext.add(res);
      }
    },
    watches: () => openWatches.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push(`${req.method} ${req.url}`);
    const go = (): void => {
      try {
        serve(req, res);
      } catch (err) {
        if (err instanceof SelectorError) status(res, 400, "BadRequest", err.message);
        else status(res, 500, "InternalError", (err as Error).message);
      }
    };
    if (api.latencyMs > 0) setTimeout(go, api.latencyMs);
    else go();
  };
  const server = serving ? https.createServer({ cert: serving.cert, key: serving.key }, handler) : http.createServer(handler);
  // The TCP sockets under TLS too: those can be reset.
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  function serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://fake");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (path === "/healthz" || path === "/readyz" || path === "/livez") return text(res, 200, "ok");
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const who = token ? o.tokens[token] : undefined;
    if (!who) return status(res, 401, "Unauthorized", "Unauthorized");
    const forced = api.override?.(req.url ?? "/");
    if (forced) {
      res.writeHead(forced.status, { "content-type": "application/json", "content-length": Buffer.byteLength(forced.body) });
      return void res.end(forced.body);
    }
    if (path === TOKEN_REVIEWS && req.method === "POST") return tokenReview(req, res, who);
    if (req.method === "POST" || req.method === "PUT") {
      const w = parseRoute(path);
      if (w?.kind === "objects" && w.namespace !== undefined && WRITABLE.has(w.resource.plural) && !api.notServed.has(w.resource.plural)) {
        return serveWrite(req, res, { resource: w.resource, namespace: w.namespace, name: w.name }, store, (verb) => who.allow?.(verb, w.resource.plural, w.namespace) === true, who.user);
      }
    }
    if (req.method !== "GET") return status(res, 405, "MethodNotAllowed", `the fake API server serves reads, ConfigMap create/replace and TokenReview, not ${req.method} ${path}`);
    if (path === "/version") return json(res, 200, { major: "1", minor: "32", gitVersion: "v1.32.0-fake", platform: "linux/amd64" });
    if (path === "/api") return json(res, 200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: url.host }] });
    if (path === "/apis") return json(res, 200, groupList());
    const route = parseRoute(path);
    if (!route) return status(res, 404, "NotFound", "the server could not find the requested resource");
    if (route.kind === "resources") return json(res, 200, resourceList(route.group, route.version));
    const r = route.resource;
    if (api.notServed.has(r.plural)) return status(res, 404, "NotFound", "the server could not find the requested resource");
    const watch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
    const verb = route.name !== undefined ? "get" : watch ? "watch" : "list";
    if (who.allow && !who.allow(verb, r.plural, route.namespace)) {
      const scope = route.namespace ? `in the namespace "${route.namespace}"` : "at the cluster scope";
      return status(res, 403, "Forbidden", `${r.plural}${route.name ? ` "${route.name}"` : ""} is forbidden: User "${who.user}" cannot ${verb} resource "${r.plural}" in API group "${r.group}" ${scope}`, { group: r.group, kind: r.plural, ...(route.name ? { name: route.name } : {}) });
    }
    const select = selectorOf(url, route.namespace);
    if (route.name !== undefined) {
      const obj = store.get(r, route.namespace, route.name);
      return obj ? json(res, 200, obj) : status(res, 404, "NotFound", `${r.plural} "${route.name}" not found`, { group: r.group, kind: r.plural, name: route.name });
    }
    if (watch) return startWatch(req, res, r, url, select);
    return list(res, r, url, select);
  }

  function tokenReview(req: http.IncomingMessage, res: http.ServerResponse, who: FakeKubeToken): void {
    if (who.allow?.("create", "tokenreviews", undefined) !== true) {
      return status(res, 403, "Forbidden", `tokenreviews.authentication.k8s.io is forbidden: User "${who.user}" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope`, { group: "authentication.k8s.io", kind: "tokenreviews" });
    }
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (raw += c));
    req.on("end", () => {
      const answer = answerTokenReview(api.serviceAccountTokens, raw);
      if ("error" in answer) status(res, 400, "BadRequest", answer.error);
      else json(res, answer.status, answer.body);
    });
  }

  function selectorOf(url: URL, namespace: string | undefined): Selector {
    const labels = labelSelector(url.searchParams.get("labelSelector"));
    const fields = fieldSelector(url.searchParams.get("fieldSelector"));
    return (obj) => (namespace === undefined || obj.metadata?.namespace === namespace) && labels(obj) && fields(obj);
  }

  function list(res: http.ServerResponse, r: Resource, url: URL, select: Selector): void {
    dropOldSnapshots();
    const limit = Number(url.searchParams.get("limit") ?? "0");
    const cont = url.searchParams.get("continue");
    let page: Paged;
    let offset = 0;
    if (cont) {
      const parsed = parseContinue(cont);
      const snap = parsed && snapshots.get(parsed.id);
      if (!parsed || !snap) return status(res, 410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
      page = snap;
      offset = parsed.offset;
    } else {
      page = { epoch: store.epoch, rv: store.resourceVersion, items: store.items(r).filter(select).sort(byKey) };
    }
    const n = limit > 0 ? limit : page.items.length;
    const items = page.items.slice(offset, offset + n);
    const meta: Record<string, unknown> = { resourceVersion: String(page.rv) };
    if (offset + n < page.items.length) {
      let id = cont ? parseContinue(cont)!.id : undefined;
      if (!id) {
        id = String(++snapshotId);
        snapshots.set(id, page);
      }
      meta["continue"] = Buffer.from(JSON.stringify({ id, offset: offset + n })).toString("base64url");
      meta["remainingItemCount"] = page.items.length - offset - n;
    }
    json(res, 200, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: meta, items });
  }

  function dropOldSnapshots(): void {
    for (const [id, s] of snapshots) if (s.epoch !== store.epoch) snapshots.delete(id);
  }

  function startWatch(req: http.IncomingMessage, res: http.ServerResponse, r: Resource, url: URL, select: Selector): void {
    const rvParam = url.searchParams.get("resourceVersion") ?? "";
    const bookmarks = url.searchParams.get("allowWatchBookmarks") === "true";
    const timeout = Number(url.searchParams.get("timeoutSeconds") ?? "0");
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked", "cache-control": "no-cache, private" });
    res.flushHeaders();
    const send = (type: string, object: unknown): void => {
      const line = JSON.stringify({ type, object });
      if (type !== "BOOKMARK" && truncateNext.delete(res)) return void res.write(`${line.slice(0, line.length >> 1)}\n`);
      res.write(`${line}\n`);
    };
    let backlog: Change[] | undefined;
    if (rvParam === "" || rvParam === "0") {
      for (const obj of store.items(r).filter(select).sort(byKey)) send("ADDED", obj);
      backlog = [];
    } else {
      const rv = Number(rvParam);
      backlog = Number.isInteger(rv) ? store.since(r, rv) : undefined;
      if (!backlog) {
        send("ERROR", statusBody(410, "Expired", `too old resource version: ${rvParam} (${store.oldestResumable})`));
        res.end();
        return;
      }
    }
    for (const c of backlog) if (select(c.object)) send(c.type, c.object);
    openWatches.add(res);
    const unsubscribe = store.subscribe((c) => {
      if (c.resource === r && select(c.object)) send(c.type, c.object);
    });
    const bookmark = bookmarks ? setInterval(() => send("BOOKMARK", { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(store.resourceVersion) } }), bookmarkMs) : undefined;
    const ending = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const done = (): void => {
      openWatches.delete(res);
      truncateNext.delete(res);
      unsubscribe();
      clearInterval(bookmark);
      clearTimeout(ending);
    };
    res.once("close", done);
    req.once("close", done);
  }

  function groupList(): unknown {
    const groups = [...new Set(RESOURCES.filter((r) => r.group).map((r) => `${r.group}/${r.version}`))].map((gv) => {
      const [name, version] = gv.split("/") as [string, string];
      return { name, versions: [{ groupVersion: gv, version }], preferredVersion: { groupVersion: gv, version } };
    });
    return { kind: "APIGroupList", apiVersion: "v1", groups };
  }

  function resourceList(group: string, version: string): unknown {
    const resources = RESOURCES.filter((r) => r.group === group && r.version === version).map((r) => ({
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: WRITABLE.has(r.plural) ? ["create", "get", "list", "update", "watch"] : ["get", "list", "watch"],
      ...(r.shortNames ? { shortNames: r.shortNames } : {}),
    }));
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: group ? `${group}/${version}` : version, resources };
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (o.socketPath) server.listen(o.socketPath, () => resolve());
    else server.listen(o.port ?? 0, o.host ?? "127.0.0.1", () => resolve());
  });
  if (o.socketPath) {
    (api as { url: string }).url = o.advertise ?? `${serving ? "https" : "http"}://127.0.0.1:6443`;
  } else {
    const addr = server.address() as net.AddressInfo;
    (api as { url: string }).url = `${serving ? "https" : "http"}://${addr.address.includes(":") ? `[${addr.address}]` : addr.address}:${addr.port}`;
  }
  return api;
}

type Route = { kind: "resources"; group: string; version: string } | { kind: "objects"; resource: Resource; namespace: string | undefined; name: string | undefined };

/** /api/v1/..., /apis/<group>/<version>/...: a resource list, or objects (cluster-wide, in a namespace, or one by name). */
function parseRoute(path: string): Route | undefined {
  const parts = path.split("/").filter(Boolean);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === "api" && parts[1] === "v1") [group, version, rest] = ["", "v1", parts.slice(2)];
  else if (parts[0] === "apis" && parts.length >= 3) [group, version, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
  else return undefined;
  const find = (plural: string | undefined): Resource | undefined => RESOURCES.find((r) => r.group === group && r.version === version && r.plural === plural);
  if (rest.length === 0) return RESOURCES.some((r) => r.group === group && r.version === version) ? { kind: "resources", group, version } : undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    const resource = find(rest[2]);
    if (!resource?.namespaced || rest.length > 4) return undefined;
    return { kind: "objects", resource, namespace: rest[1], name: rest[3] };
  }
  const resource = find(rest[0]);
  if (!resource || rest.length > 2) return undefined;
  if (rest.length === 2 && resource.namespaced) return undefined;
  return { kind: "objects", resource, namespace: undefined, name: rest[1] };
}

function parseContinue(token: string): { id: string; offset: number } | undefined {
  try {
    const v = JSON.parse(Buffer.from(token, "base64url").toString()) as { id?: unknown; offset?: unknown };
    return typeof v.id === "string" && typeof v.offset === "number" ? { id: v.id, offset: v.offset } : undefined;
  } catch {
    return undefined;
  }
}

const byKey = (a: KubeObject, b: KubeObject): number => {
  const ka = `${a.metadata.namespace ?? ""}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace ?? ""}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};
