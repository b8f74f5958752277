import { describe, expect, test } from "vitest";
import type { ConnectionRecord, ConnectionSnapshot, LiveConnection } from "@zt/proxy";
import { createConnectionPages } from "./connection-pages.js";

// The worker's side of GET /debug/connections: pages over the live set, then the connections
// still dialling, continued from where the previous page of the same listing ended.
const rec = (i: number, direction: "inbound" | "outbound" = "outbound", ns = "default"): ConnectionRecord => ({
  direction,
  listener: direction === "outbound" ? "socks5" : "hbone",
  startMs: 1000 + i,
  src: { addr: `127.0.0.1:${i}`, namespace: ns },
  dst: { addr: "127.0.0.2:80", namespace: "default" },
  security: "mutual_tls",
  bytesSent: 0,
  bytesRecv: 0,
  flag: "-",
});
const live = (r: ConnectionRecord, sent = 7): LiveConnection => ({
  rec: r,
  destroy: () => {},
  reauthorize: () => {},
  snapshot: (): ConnectionSnapshot => ({ direction: r.direction, listener: r.listener, state: "open", src: r.src, dst: r.dst, service: null, hboneAddr: null, security: r.security, bytesSent: sent, bytesRecv: 0, startMs: r.startMs }),
});
const addrs = (items: ConnectionSnapshot[]): string[] => items.map((s) => s.src.addr);

describe("connection pages", () => {
  test("live connections first, then the ones connecting; more and held; every page continues the last", () => {
    const openSet = new Set([0, 1, 2].map((i) => live(rec(i))));
    const dialling = new Set([rec(3)]);
    const pages = createConnectionPages(openSet, dialling, () => false);
    const p1 = pages({ listing: 1, offset: 0, limit: 2 });
    expect([addrs(p1.items), p1.more, p1.held]).toEqual([["127.0.0.1:0", "127.0.0.1:1"], true, 4]);
    expect(p1.items[0]).toMatchObject({ state: "open", bytesSent: 7 });
    const p2 = pages({ listing: 1, offset: 2, limit: 2 });
    expect([addrs(p2.items), p2.more]).toEqual([["127.0.0.1:2", "127.0.0.1:3"], false]);
    expect(p2.items[1]).toMatchObject({ state: "connecting", bytesSent: 0, bytesRecv: 0, listener: "socks5" });
  });

  test("a connection open throughout is listed once, though others close and open between pages", () => {
    const c = [0, 1, 2, 3, 4].map((i) => live(rec(i)));
    const openSet = new Set(c);
    const pages = createConnectionPages(openSet, new Set(), () => false);
    const p1 = pages({ listing: 7, offset: 0, limit: 2 });
    // 0 and 1 listed, 2 read ahead (for `more`): 1 and 2 close, 5 opens.
    openSet.delete(c[1]!);
    openSet.delete(c[2]!);
    openSet.add(live(rec(5)));
    const p2 = pages({ listing: 7, offset: 2, limit: 10 });
    expect([...addrs(p1.items), ...addrs(p2.items)]).toEqual(["127.0.0.1:0", "127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"]);
  });

  test("filters by direction and by namespace of either side; an unknown listing or offset starts over from the offset", () => {
    const openSet = new Set([live(rec(0, "inbound")), live(rec(1, "outbound", "other")), live(rec(2, "inbound", "other"))]);
    const pages = createConnectionPages(openSet, new Set([rec(3, "inbound", "other")]), () => false);
    expect(addrs(pages({ listing: 1, offset: 0, limit: 10, direction: "inbound" }).items)).toEqual(["127.0.0.1:0", "127.0.0.1:2", "127.0.0.1:3"]);
    expect(addrs(pages({ listing: 2, offset: 0, limit: 10, namespace: "other" }).items)).toEqual(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
    expect(addrs(pages({ listing: 3, offset: 1, limit: 1, direction: "inbound", namespace: "other" }).items)).toEqual(["127.0.0.1:3"]);
    // Limit 0: only whether any is there.
    expect(pages({ listing: 4, offset: 0, limit: 0 })).toEqual({ items: [], more: true, held: 4 });
    expect(pages({ listing: 5, offset: 4, limit: 0 })).toEqual({ items: [], more: false, held: 4 });
  });

  test("while the agent drains, every connection is listed as draining", () => {
    let draining = false;
    const pages = createConnectionPages(new Set([live(rec(0))]), new Set([rec(1)]), () => draining);
    expect(pages({ listing: 1, offset: 0, limit: 10 }).items.map((s) => s.state)).toEqual(["open", "connecting"]);
    draining = true;
    expect(pages({ listing: 2, offset: 0, limit: 10 }).items.map((s) => s.state)).toEqual(["draining", "draining"]);
  });
});
