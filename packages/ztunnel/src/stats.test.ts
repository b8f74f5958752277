import http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { listen } from "./listen.js";
import { createStatsServer } from "./stats.js";

const servers: http.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function get(addr: AddressInfo, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: addr.address, port: addr.port, path, agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
      })
      .on("error", reject);
  });
}

describe("stats server", () => {
  it("serves the registry at /metrics and /stats/prometheus", async () => {
    const registry = new Registry();
    new Counter({ name: "zt_test_total", help: "test", registers: [registry] }).inc(3);
    const server = createStatsServer(() => registry.metrics());
    servers.push(server);
    const addr = await listen(server, { ip: "127.0.0.1", port: 0 });
    for (const path of ["/metrics", "/stats/prometheus"]) {
      const r = await get(addr, path);
      expect(r.status).toBe(200);
      expect(r.type).toBe(registry.contentType);
      expect(r.body).toContain("zt_test_total 3");
    }
    expect((await get(addr, "/")).status).toBe(404);
  });
});
