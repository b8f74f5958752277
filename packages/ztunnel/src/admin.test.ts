import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ConnectionSnapshot } from "@zt/proxy";
import { createAdminServer } from "./admin.js";
import type { ConnectionSource } from "./admin-connections.js";
import type { ConnectionPageRequest } from "./connection-pages.js";
import type { AdminOriginPolicy } from "./admin-origin.js";
import { listen } from "./listen.js";
import { createLogger } from "./logging.js";

const servers: http.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function request(addr: AddressInfo, method: string, path: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: addr.address, port: addr.port, method, path, headers, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** A fake of the workers: `sizes[i]` connections on worker i, made up as each page is asked for. */
function fakeConnections(sizes: number[], idBytes = 40): ConnectionSource & { asked: ConnectionPageRequest[] } {
  const asked: ConnectionPageRequest[] = [];
  const conn = (worker: number, i: number): ConnectionSnapshot => ({
    direction: i % 2 === 0 ? "outbound" : "inbound",
    listener: i % 2 === 0 ? "socks5" : "hbone",
    state: "open",
    src: { addr: `127.0.${worker}.1:${10000 + i}`, workload: "sleep", namespace: "default", identity: `spiffe://cluster.local/ns/default/sa/${"s".repeat(idBytes)}` },
    dst: { addr: "127.0.0.2:8080", workload: "<img src=x>", namespace: i % 3 === 0 ? "other" : "default" },
    service: null,
    hboneAddr: "127.0.0.2:15008",
    security: "mutual_tls",
    bytesSent: i,
    bytesRecv: 2 * i,
    startMs: Date.now() - 1500,
  });
  return {
    asked,
    workers: () => sizes.length,
    page: async (worker, req) => {
      asked.push(req);
      const matches = (c: ConnectionSnapshot): boolean => (req.direction === undefined || c.direction === req.direction) && (req.namespace === undefined || c.src.namespace === req.namespace || c.dst.namespace === req.namespace);
      const items: ConnectionSnapshot[] = [];
      let seen = 0;
      for (let i = 0; i < (sizes[worker] ?? 0); i++) {
        const c = conn(worker, i);
        if (!matches(c)) continue;
        if (seen++ < req.offset) continue;
        if (items.length === req.limit) return { items, more: true, held: sizes[worker] ?? 0 };
        items.push(c);
      }
      return { items, more: false, held: sizes[worker] ?? 0 };
    },
  };
}

async function start(
  origin: AdminOriginPolicy = { adminIp: "127.0.0.1" },
  connections: ConnectionSource = fakeConnections([]),
): Promise<{ addr: AddressInfo; shutdowns: () => number; logger: ReturnType<typeof createLogger> }> {
  const logger = createLogger({ logFormat: "json", logLevel: "info" }, new Writable({ write: (_c, _e, cb) => cb() }));
  let shutdowns = 0;
  const server = createAdminServer({
    configDump: () => ({ workloads: [{ name: "sleep-1" }], config: { nodeName: "node-a" } }),
    logger,
    setLogLevel: (level) => {
      logger.level = level;
    },
    getLogLevel: () => logger.level,
    shutdown: () => void shutdowns++,
    summary: () => ({ node: "node-a", version: "0.1.0", workloads: 3, note: "<b>" }),
    status: () => ({ ready: true, pending: [] }),
    connections,
    nodeName: "node-a",
    explain: () => {
      throw new Error("not asked in these tests");
    },
    origin,
  });
  servers.push(server);
  const addr = await listen(server, { ip: "127.0.0.1", port: 0 });
  return { addr, shutdowns: () => shutdowns, logger };
}

describe("admin server", () => {
  it("serves /config_dump as pretty JSON", async () => {
    const { addr } = await start();
    const r = await request(addr, "GET", "/config_dump");
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/json");
    expect(JSON.parse(r.body)).toEqual({ workloads: [{ name: "sleep-1" }], config: { nodeName: "node-a" } });
    expect(r.body).toContain('\n  "workloads"');
  });

  it("reads and changes the log level", async () => {
    const { addr, logger } = await start();
    expect((await request(addr, "GET", "/logging")).body).toBe("current log level is info\n");
    const set = await request(addr, "POST", "/logging?level=debug");
    expect(set).toMatchObject({ status: 200, body: "current log level is debug\n" });
    expect(logger.level).toBe("debug");
    expect((await request(addr, "POST", "/logging?level=off")).body).toBe("current log level is off\n");
    expect(logger.level).toBe("silent");
    const bad = await request(addr, "POST", "/logging?level=loud");
    expect(bad.status).toBe(400);
    expect(bad.body).toMatch(/invalid level "loud": expected one of trace, debug, info, warn, error, off/);
    expect((await request(addr, "POST", "/logging")).status).toBe(400);
    expect((await request(addr, "DELETE", "/logging")).status).toBe(405);
  });

  it("stops on POST /quitquitquit only, after answering", async () => {
    const { addr, shutdowns } = await start();
    expect((await request(addr, "GET", "/quitquitquit")).status).toBe(405);
    expect(shutdowns()).toBe(0);
    const r = await request(addr, "POST", "/quitquitquit");
    expect(r).toMatchObject({ status: 200, body: "OK\n" });
    await vi.waitFor(() => expect(shutdowns()).toBe(1));
  });

  it("shows a human page at / and 404 elsewhere", async () => {
    const { addr } = await start();
    const home = await request(addr, "GET", "/");
    expect(home.status).toBe(200);
    expect(home.type).toMatch(/^text\/html/);
    expect(home.body).toContain('<a href="/config_dump">');
    expect(home.body).toContain("node-a");
    expect(home.body).toContain("&#60;b&#62;");
    expect((await request(addr, "GET", "/nope")).status).toBe(404);
  });

  it("with a wildcard ADMIN_ADDR, takes this host's own addresses as Host and refuses others", async () => {
    const { addr } = await start({ adminIp: "0.0.0.0", isLocalAddress: (ip) => ip === "192.0.2.5" });
    expect((await request(addr, "GET", "/config_dump", { host: "192.0.2.5:15000" })).status).toBe(200);
    expect((await request(addr, "GET", "/config_dump", { host: "192.0.2.6:15000" })).status).toBe(403);
    expect((await request(addr, "GET", "/config_dump", { host: "admin.node.example" })).status).toBe(403);
    expect((await request(addr, "POST", "/logging?level=info", { host: "192.0.2.5", origin: "http://192.0.2.5" })).status).toBe(200);
  });

  it("answers 400 to a request target that is not a path, and goes on serving", async () => {
    const { addr } = await start();
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(addr.port, addr.address, () => s.end("GET //x:99999 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
      let got = "";
      s.on("data", (d: Buffer) => (got += d.toString()));
      s.on("end", () => resolve(got));
      s.on("error", reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toMatch(/bad request: the request target is not a path/);
    expect((await request(addr, "GET", "/config_dump")).status).toBe(200);
  });

  it("answers 405 with Allow to any other method on every read-only page", async () => {
    const { addr } = await start();
    for (const path of ["/", "/config_dump", "/debug/connections", "/debug/status", "/debug/explain"]) {
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        const r = await request(addr, method, path);
        expect([path, method, r.status, r.body]).toEqual([path, method, 405, `method ${method} not allowed on ${path}; use GET\n`]);
      }
    }
    const res = await new Promise<http.IncomingMessage>((resolve) => http.request({ host: addr.address, port: addr.port, method: "POST", path: "/debug/connections", agent: false }, resolve).end());
    expect(res.headers["allow"]).toBe("GET");
    res.resume();
  });

  it("the page at / is locked down: its own script by hash, fetches to its own origin only", async () => {
    const { addr } = await start();
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get({ host: addr.address, port: addr.port, path: "/", agent: false }, resolve));
    res.resume();
    const csp = String(res.headers["content-security-policy"]);
    expect(csp).toMatch(/default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-[A-Za-z0-9+/=]+'; connect-src 'self'/);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
  });

  it("/debug/status is the status document as JSON", async () => {
    const { addr } = await start();
    const r = await request(addr, "GET", "/debug/status");
    expect([r.status, r.type, JSON.parse(r.body)]).toEqual([200, "application/json", { ready: true, pending: [] }]);
  });

  it("/debug/connections lists every worker's connections page by page, with the node, counts and bytes", async () => {
    const source = fakeConnections([700, 3]);
    const { addr } = await start(undefined, source);
    const r = await request(addr, "GET", "/debug/connections");
    expect([r.status, r.type]).toEqual([200, "application/json"]);
    const body = JSON.parse(r.body) as { node: string; limit: number; count: number; truncated: boolean; held: number; unanswered: number[]; connections: Record<string, unknown>[] };
    expect(body).toMatchObject({ node: "node-a", limit: 10000, count: 703, truncated: false, held: 703, unanswered: [] });
    expect(body.connections).toHaveLength(703);
    expect(body.connections[1]).toMatchObject({
      worker: 0,
      direction: "inbound",
      listener: "hbone",
      state: "open",
      src: { addr: "127.0.0.1:10001", workload: "sleep", namespace: "default" },
      dst: { addr: "127.0.0.2:8080", workload: "<img src=x>", namespace: "default", identity: null, service: null, hboneAddr: "127.0.0.2:15008" },
      security: "mutual_tls",
      bytesSent: 1,
      bytesRecv: 2,
    });
    expect(body.connections[1]!["ageMs"]).toBeGreaterThanOrEqual(1500);
    expect(Date.parse(String(body.connections[1]!["startTime"]))).toBeLessThan(Date.now());
    expect(body.connections[702]).toMatchObject({ worker: 1, src: { addr: "127.0.1.1:10002" } });
    // Pages of 500, worker after worker, each from where the last one ended.
    expect(source.asked.map((a) => [a.offset, a.limit])).toEqual([[0, 500], [500, 500], [0, 500]]);
  });

  it("/debug/connections: limit (truncated says so), direction and namespace filters, and 400 for bad values", async () => {
    const source = fakeConnections([10, 10]);
    const { addr } = await start(undefined, source);
    const get = async (q: string): Promise<{ count: number; truncated: boolean; held: number; connections: { direction: string; dst: { namespace: string } }[] }> => JSON.parse((await request(addr, "GET", `/debug/connections${q}`)).body);
    // Past the limit, the workers not listed are still counted in held.
    expect(await get("?limit=10")).toMatchObject({ count: 10, truncated: true, held: 20 });
    // The listing's last page of each worker keeps no cursor in it (final).
    expect(source.asked.slice(-2).map((r) => [r.limit, r.final])).toEqual([[10, true], [0, true]]);
    expect(await get("?limit=20")).toMatchObject({ count: 20, truncated: false, held: 20 });
    expect(await get("?limit=19")).toMatchObject({ count: 19, truncated: true, held: 20 });
    expect(await get("?limit=1")).toMatchObject({ count: 1, truncated: true, held: 20 });
    const inbound = await get("?direction=inbound");
    expect([inbound.count, new Set(inbound.connections.map((c) => c.direction))]).toEqual([10, new Set(["inbound"])]);
    const other = await get("?namespace=other&direction=outbound");
    // i = 0, 6 (outbound, i % 3 === 0) on each worker.
    expect([other.count, other.connections.every((c) => c.dst.namespace === "other" && c.direction === "outbound")]).toEqual([4, true]);
    expect(source.asked.at(-1)).toMatchObject({ direction: "outbound", namespace: "other" });
    const bad = async (q: string): Promise<[number, string]> => {
      const r = await request(addr, "GET", `/debug/connections${q}`);
      return [r.status, r.body];
    };
    expect(await bad("?limit=0")).toEqual([400, "CONNECTIONS_QUERY_INVALID: invalid limit \"0\": expected a whole number from 1 to 100000 (default 10000)\n"]);
    expect(await bad("?limit=abc")).toEqual([400, "CONNECTIONS_QUERY_INVALID: invalid limit \"abc\": expected a whole number from 1 to 100000 (default 10000)\n"]);
    expect(await bad("?limit=100001")).toEqual([400, "CONNECTIONS_QUERY_INVALID: invalid limit \"100001\": expected a whole number from 1 to 100000 (default 10000)\n"]);
    expect(await bad("?direction=sideways")).toEqual([400, "CONNECTIONS_QUERY_INVALID: invalid direction \"sideways\": expected inbound or outbound\n"]);
    expect(await bad("?dirction=inbound")).toEqual([400, "CONNECTIONS_QUERY_INVALID: unknown parameter \"dirction\": /debug/connections takes limit, direction, namespace\n"]);
    expect(await bad("?limit=1&limit=2")).toEqual([400, "CONNECTIONS_QUERY_INVALID: parameter limit given more than once\n"]);
    expect(await bad("?namespace=")).toEqual([400, "CONNECTIONS_QUERY_INVALID: invalid namespace \"\": name one, or leave the parameter out\n"]);
  });

  it("/debug/connections: a worker that does not answer is named, the others are listed", async () => {
    const source = fakeConnections([2, 2, 2]);
    const page = source.page;
    const { addr } = await start(undefined, { ...source, page: (w, req) => (w === 1 ? Promise.resolve(undefined) : page(w, req)) });
    const body = JSON.parse((await request(addr, "GET", "/debug/connections")).body) as { count: number; held: number; unanswered: number[] };
    expect(body).toMatchObject({ count: 4, held: 4, unanswered: [1] });
  });

  it("/debug/connections asks for the next page only as the client reads (back-pressure), and the whole listing parses", async () => {
    // 2 KiB per connection: a page is about 1 MiB; 40 pages are far more than the socket buffers hold.
    const source = fakeConnections([10_000, 10_000], 2048);
    const { addr } = await start(undefined, source);
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get({ host: addr.address, port: addr.port, path: "/debug/connections?limit=20000", agent: false }, resolve));
    res.pause();
    // While the client reads nothing, the asking stops once the socket buffers are full.
    await new Promise((r) => setTimeout(r, 500));
    const askedWhilePaused = source.asked.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(source.asked.length).toBe(askedWhilePaused);
    expect(askedWhilePaused).toBeLessThan(40);
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.resume();
    await new Promise((r) => res.once("end", r));
    expect(source.asked.length).toBe(40);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { count: number; truncated: boolean };
    expect(body).toMatchObject({ count: 20_000, truncated: false });
  });

  it("/debug/connections stops asking the workers when the client goes away", async () => {
    const source = fakeConnections([10_000, 10_000], 2048);
    const { addr } = await start(undefined, source);
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get({ host: addr.address, port: addr.port, path: "/debug/connections?limit=20000", agent: false }, resolve));
    res.pause();
    await new Promise((r) => setTimeout(r, 300));
    res.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const asked = source.asked.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(source.asked.length).toBe(asked);
    expect(asked).toBeLessThan(40);
  });
});
