import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { listen } from "./listen.js";
import { createReadinessServer } from "./readiness.js";

const servers: http.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function get(addr: AddressInfo, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: addr.address, port: addr.port, path, agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

describe("readiness server", () => {
  it("answers 503 with what is pending, then 200 ready", async () => {
    let pending = ["certificate spiffe://cluster.local/ns/default/sa/sleep", "workloads"];
    const server = createReadinessServer({ pending: () => pending });
    servers.push(server);
    const addr = await listen(server, { ip: "127.0.0.1", port: 0 });
    expect(await get(addr, "/healthz/ready")).toEqual({
      status: 503,
      body: "certificate spiffe://cluster.local/ns/default/sa/sleep\nworkloads\n",
    });
    pending = [];
    expect(await get(addr, "/healthz/ready")).toEqual({ status: 200, body: "ready\n" });
    expect((await get(addr, "/healthz/live")).status).toBe(404);
  });
});
