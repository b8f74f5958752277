import http from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createAdminServer } from "./admin.js";
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

async function start(origin: AdminOriginPolicy = { adminIp: "127.0.0.1" }): Promise<{ addr: AddressInfo; shutdowns: () => number; logger: ReturnType<typeof createLogger> }> {
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
});
