import net from "node:net";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ADDRESS_TYPE, AUTHORIZATION_TYPE, decodeAddress, decodeAuthorization, type DeltaResponse } from "@zt/istio";
import { createMeshStore, type MeshSnapshot, type Workload } from "@zt/state";
import { connectRawAds, startTlsAdsServer, type RawAdsClient, type TlsServer } from "./test-support/ads-client.js";
import { podWorkload, policy, service } from "./test-support/mesh.js";
import { createXdsServer, MAX_NACK_DETAIL, XdsRefusal, type XdsCaller, type XdsServer, type XdsServerOptions } from "./xds-server.js";

const TYPES = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

interface Fixture {
  xds: XdsServer;
  tls: TlsServer;
  store: ReturnType<typeof createMeshStore>;
  logs: Record<string, unknown>[];
  registry: Registry;
  connect(nodeId: string, opts?: { metadata?: grpc.Metadata; autoAck?: boolean }): RawAdsClient;
}

const open: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of open.splice(0).reverse()) await f();
});

function baseSnapshot(): MeshSnapshot {
  return {
    workloads: [podWorkload(1), podWorkload(2), podWorkload(3)],
    services: [service(0)],
    policies: [policy("allow-ns", "ns-1")],
  };
}

/** These tests' clients present no token: every caller accepted, no pod named (no node-id check, no per-pod limit). */
const acceptEveryCaller = async (): Promise<XdsCaller> => ({ name: "test client" });

async function start(snapshot: MeshSnapshot = baseSnapshot(), authenticate: (md: grpc.Metadata) => Promise<XdsCaller> = acceptEveryCaller, more: Partial<XdsServerOptions> = {}): Promise<Fixture> {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, new Writable({ write: (c: Buffer, _e, cb) => (logs.push(JSON.parse(c.toString()) as Record<string, unknown>), cb()) }));
  const store = createMeshStore(snapshot);
  const registry = new Registry();
  const xds = createXdsServer({ store, logger, registry, authenticate, ...more });
  const tls = await startTlsAdsServer(xds.implementation);
  open.push(() => tls.close(), () => xds.close());
  return {
    xds,
    tls,
    store,
    logs,
    registry,
    connect(nodeId, opts = {}) {
      const c = connectRawAds(tls.port, tls.rootPem, { nodeId, ...opts });
      open.push(() => c.close());
      return c;
    },
  };
}

const names = (r: DeltaResponse): string[] => r.resources.map((x) => x.name).sort();

/** Subscribes to both types and ACKs both first responses. */
async function synced(c: RawAdsClient, initial?: Record<string, Record<string, string>>): Promise<{ address: DeltaResponse; authz: DeltaResponse }> {
  c.subscribe(TYPES, initial);
  const address = await c.next(ADDRESS_TYPE);
  const authz = await c.next(AUTHORIZATION_TYPE);
  c.ack(address);
  c.ack(authz);
  return { address, authz };
}

/** Resolves once the server has seen the ACK of the last nonce sent, for every type of every client. */
async function allAcked(xds: XdsServer, n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const cs = xds.clients();
    if (cs.length === n && cs.every((c) => Object.values(c.types).every((t) => t.lastNonceSent !== null && t.lastNonceAcked === t.lastNonceSent && !t.inFlight))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("clients did not ACK in time");
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${what}: not within 5 s`);
}

/** A TCP relay on 127.0.0.1 that can stop passing the server's bytes to the client (the client's bytes still pass). */
async function startRelay(target: number): Promise<{ port: number; hold(): void; release(): void; close(): void }> {
  const ups: net.Socket[] = [];
  const downs: net.Socket[] = [];
  const server = net.createServer((down) => {
    const up = net.connect(target, "127.0.0.1");
    ups.push(up);
    downs.push(down);
    down.pipe(up);
    up.pipe(down);
    const kill = (): void => (up.destroy(), down.destroy());
    up.on("error", kill).on("close", kill);
    down.on("error", kill).on("close", kill);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    hold: () => ups.forEach((u) => (u.unpipe(), u.pause())),
    release: () => ups.forEach((u, i) => u.pipe(downs[i]!)),
    close: () => (ups.forEach((u) => u.destroy()), server.close()),
  };
}

const uid = (i: number): string => podWorkload(i).uid;

describe("xDS server over TLS gRPC (real grpc-js server and raw bidi client on 127.0.0.1)", () => {
  it("sends both types on the first requests, each resource decoding to what the store holds", async () => {
    const f = await start();
    const c = f.connect("ztunnel~10.0.0.1~zt-a.istio-system~istio-system.svc.cluster.local");
    const { address, authz } = await synced(c);
    expect(names(address)).toEqual([uid(1), uid(2), uid(3), "ns-0/svc-0.ns-0.svc.cluster.local"].sort());
    expect(address.removed_resources).toEqual([]);
    const w1 = address.resources.find((r) => r.name === uid(1))!;
    expect(w1.resource?.type_url).toBe(ADDRESS_TYPE);
    expect(w1.version).toMatch(/^[\w-]{12}$/);
    const decoded = decodeAddress(w1.resource!.value);
    expect(decoded.workload?.uid).toBe(uid(1));
    expect(decoded.workload?.addresses.map((a) => [...a])).toEqual([[10, 0, 0, 1]]);
    const svc = decodeAddress(address.resources.find((r) => r.name.startsWith("ns-0/"))!.resource!.value);
    expect(svc.service?.hostname).toBe("svc-0.ns-0.svc.cluster.local");
    expect(names(authz)).toEqual(["ns-1/allow-ns"]);
    expect(decodeAuthorization(authz.resources[0]!.resource!.value)).toMatchObject({ name: "allow-ns", namespace: "ns-1", scope: "NAMESPACE", action: "ALLOW" });
    await allAcked(f.xds, 1);
    const [status] = f.xds.clients();
    expect(status?.id).toBe(c.nodeId);
    expect(status?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(status?.types[ADDRESS_TYPE]).toMatchObject({ resources: 4, nacks: 0, lastNack: null, wildcard: true });
    expect(status?.types[AUTHORIZATION_TYPE]).toMatchObject({ resources: 1 });
    expect(await f.registry.getSingleMetricAsString("controller_xds_clients")).toMatch(/controller_xds_clients 1$/m);
  });

  it("sends an empty first response for a type with no resources", async () => {
    const f = await start({ workloads: [podWorkload(1)], services: [], policies: [] });
    const c = f.connect("empty-authz");
    const { authz } = await synced(c);
    expect(authz.resources).toEqual([]);
    expect(authz.removed_resources).toEqual([]);
    expect(authz.nonce).not.toBe("");
  });

  it("after the ACK, a store.apply pushes only the changed workload, encoded once", async () => {
    const f = await start();
    const c = f.connect("delta");
    await synced(c);
    await allAcked(f.xds, 1);
    const before = f.xds.stats().encodes;
    f.store.apply({ workloads: [podWorkload(2, { status: "Unhealthy" })] });
    const r = await c.next(ADDRESS_TYPE);
    expect(names(r)).toEqual([uid(2)]);
    expect(r.removed_resources).toEqual([]);
    expect(decodeAddress(r.resources[0]!.resource!.value).workload?.status).toBe("UNHEALTHY");
    expect(f.xds.stats().encodes - before).toBe(1);
    c.ack(r);
    // A workload written again unchanged sends nothing: the next change is the only one to arrive.
    f.store.apply({ workloads: [podWorkload(1)] });
    f.store.apply({ workloads: [podWorkload(3, { node: "node-x" })] });
    const r2 = await c.next(ADDRESS_TYPE);
    expect(names(r2)).toEqual([uid(3)]);
  });

  it("a resource that cannot be encoded is logged and left out; the rest go on", async () => {
    const f = await start();
    const c = f.connect("unservable");
    await synced(c);
    expect(() => f.store.apply({ workloads: [podWorkload(2, { workloadIps: ["not-an-ip"] }), podWorkload(3, { node: "n3" })] })).not.toThrow();
    const r = await c.next(ADDRESS_TYPE);
    expect(names(r)).toEqual([uid(3)]);
    expect(r.removed_resources).toEqual([uid(2)]);
    expect(f.logs.filter((l) => l["code"] === "XDS_RESOURCE_UNSERVABLE").map((l) => l["name"])).toEqual([uid(2)]);
  });

  it("a removal pushes removed_resources", async () => {
    const f = await start();
    const c = f.connect("removal");
    await synced(c);
    f.store.apply({ removedWorkloads: [uid(3)], removedServices: ["ns-0/svc-0.ns-0.svc.cluster.local"] });
    const r = await c.next(ADDRESS_TYPE);
    expect(r.resources).toEqual([]);
    expect([...r.removed_resources].sort()).toEqual([uid(3), "ns-0/svc-0.ns-0.svc.cluster.local"].sort());
    expect([...c.held.get(ADDRESS_TYPE)!.keys()].sort()).toEqual([uid(1), uid(2)]);
  });

  it("coalesces changes while a response is in flight and sends them after its ACK", async () => {
    const f = await start();
    const c = f.connect("coalesce");
    await synced(c);
    f.store.apply({ workloads: [podWorkload(1, { node: "n1" })] });
    const r1 = await c.next(ADDRESS_TYPE);
    expect(names(r1)).toEqual([uid(1)]);
    // Not ACKed yet: these wait, and travel together.
    f.store.apply({ workloads: [podWorkload(2, { node: "n2" })] });
    f.store.apply({ workloads: [podWorkload(3, { node: "n3" })], removedWorkloads: [] });
    await new Promise((r) => setTimeout(r, 50));
    expect(c.responses.filter((r) => r.type_url === ADDRESS_TYPE)).toHaveLength(2);
    c.ack(r1);
    const r2 = await c.next(ADDRESS_TYPE);
    expect(names(r2)).toEqual([uid(2), uid(3)]);
  });

  it("a selector policy makes the selected workloads name it; changing it re-sends only the workloads whose list changes", async () => {
    const snap = baseSnapshot();
    // pod-1 and pod-2 share app-0 (i / 5); pod-6 is app-1.
    const f = await start({ ...snap, workloads: [...snap.workloads, podWorkload(6, { namespace: "ns-1" })] });
    const c = f.connect("selector");
    await synced(c);
    const sel = (app: string) => policy("by-app", "ns-1", { scope: "WorkloadSelector", selector: new Map([["app", app]]) });
    f.store.apply({ policies: [...snap.policies, sel("app-1")] });
    const authz = await c.next(AUTHORIZATION_TYPE);
    expect(names(authz)).toEqual(["ns-1/by-app"]);
    expect(decodeAuthorization(authz.resources[0]!.resource!.value).scope).toBe("WORKLOAD_SELECTOR");
    const addr = await c.next(ADDRESS_TYPE);
    expect(names(addr)).toEqual([uid(6).replace("ns-6", "ns-1")]);
    expect(decodeAddress(addr.resources[0]!.resource!.value).workload?.authorization_policies).toEqual(["ns-1/by-app"]);
    c.ack(authz);
    c.ack(addr);
    // Move the selector to app-0 in ns-1: pod-1 (ns-1, app-0) gains it, pod-6 loses it; pod-2 (ns-2) and pod-3 (ns-3) are untouched.
    f.store.apply({ policies: [...snap.policies, sel("app-0")] });
    const addr2 = await c.next(ADDRESS_TYPE);
    expect(names(addr2)).toEqual([uid(1), podWorkload(6, { namespace: "ns-1" }).uid].sort());
    const byName = new Map(addr2.resources.map((r) => [r.name, decodeAddress(r.resource!.value).workload!]));
    expect(byName.get(uid(1))?.authorization_policies).toEqual(["ns-1/by-app"]);
    expect(byName.get(podWorkload(6, { namespace: "ns-1" }).uid)?.authorization_policies).toEqual([]);
    // The policy's own body did not change (no selector on the wire): nothing of that type is sent.
    await new Promise((r) => setTimeout(r, 50));
    expect(c.responses.filter((r) => r.type_url === AUTHORIZATION_TYPE)).toHaveLength(2);
    c.ack(addr2);
    // Removing the policy: its removal, and the workload that named it.
    f.store.apply({ policies: snap.policies });
    const gone = await c.next(AUTHORIZATION_TYPE);
    expect(gone.removed_resources).toEqual(["ns-1/by-app"]);
    const addr3 = await c.next(ADDRESS_TYPE);
    expect(names(addr3)).toEqual([uid(1)]);
  });

  it("a reconnect with initial_resource_versions gets only the diff", async () => {
    const f = await start();
    const first = f.connect("reconnect");
    const { address, authz } = await synced(first);
    const held = { [ADDRESS_TYPE]: Object.fromEntries(first.held.get(ADDRESS_TYPE)!), [AUTHORIZATION_TYPE]: Object.fromEntries(first.held.get(AUTHORIZATION_TYPE)!) };
    expect(Object.keys(held[ADDRESS_TYPE]!)).toHaveLength(address.resources.length);
    expect(Object.keys(held[AUTHORIZATION_TYPE]!)).toHaveLength(authz.resources.length);
    first.close();
    // While it was away: one changed, one gone, one new; the policies unchanged.
    f.store.apply({ workloads: [podWorkload(1, { status: "Unhealthy" }), podWorkload(9)], removedWorkloads: [uid(2)] });
    const again = f.connect("reconnect");
    again.subscribe(TYPES, held);
    const a = await again.next(ADDRESS_TYPE);
    expect(names(a)).toEqual([uid(1), uid(9)].sort());
    expect(a.removed_resources).toEqual([uid(2)]);
    const z = await again.next(AUTHORIZATION_TYPE);
    expect(z.resources).toEqual([]);
    expect(z.removed_resources).toEqual([]);
    // A name it holds with a stale version, and one the server never had.
    const third = f.connect("reconnect-stale");
    third.subscribe([ADDRESS_TYPE], { [ADDRESS_TYPE]: { [uid(3)]: "stale", "ns-9/nope": "x" } });
    const t = await third.next(ADDRESS_TYPE);
    expect(names(t)).toEqual([uid(1), uid(3), uid(9), "ns-0/svc-0.ns-0.svc.cluster.local"].sort());
    expect(t.removed_resources).toEqual(["ns-9/nope"]);
  });

  it("a NACK is recorded, logged once with the client id, and not answered by a re-send", async () => {
    const f = await start();
    const c = f.connect("nacker");
    const { address } = await synced(c);
    await allAcked(f.xds, 1);
    f.store.apply({ workloads: [podWorkload(1, { node: "elsewhere" })] });
    const r = await c.next(ADDRESS_TYPE);
    c.nack(r, "workload pod-1: refused for the test");
    for (let i = 0; i < 200 && f.xds.stats().nacks === 0; i++) await new Promise((res) => setTimeout(res, 10));
    const st = f.xds.clients()[0]!.types[ADDRESS_TYPE]!;
    expect(st.nacks).toBe(1);
    expect(st.lastNack).toMatchObject({ nonce: r.nonce, code: grpc.status.INVALID_ARGUMENT, message: "workload pod-1: refused for the test" });
    expect(st.lastNonceAcked).toBe(address.nonce);
    expect(st.inFlight).toBe(false);
    expect(st.resources).toBe(4);
    const nackLogs = f.logs.filter((l) => l["code"] === "XDS_CLIENT_NACK");
    expect(nackLogs).toHaveLength(1);
    expect(nackLogs[0]).toMatchObject({ client: "nacker", detail: "workload pod-1: refused for the test" });
    expect(await f.registry.getSingleMetricAsString("controller_xds_nacks_total")).toMatch(/type="Address"\} 1$/m);
    // No loop: nothing more until the next change, which is sent as usual.
    await new Promise((res) => setTimeout(res, 50));
    expect(c.responses.filter((x) => x.type_url === ADDRESS_TYPE)).toHaveLength(2);
    f.store.apply({ workloads: [podWorkload(2, { node: "elsewhere" })] });
    expect(names(await c.next(ADDRESS_TYPE))).toEqual([uid(2)]);
  });

  it("ignores a request with an unknown nonce or type (logged at debug)", async () => {
    const f = await start();
    const c = f.connect("odd");
    await synced(c);
    c.send({ type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster", resource_names_subscribe: [] });
    c.send({ type_url: ADDRESS_TYPE, response_nonce: "no-such-nonce" });
    const isIgnored = (l: Record<string, unknown>): boolean => l["level"] === 20 && typeof l["msg"] === "string" && /ignored/.test(l["msg"]);
    await until("both logged", () => f.logs.filter(isIgnored).length === 2);
    f.store.apply({ workloads: [podWorkload(1, { node: "moved" })] });
    const r = await c.next();
    expect(r.type_url).toBe(ADDRESS_TYPE);
    expect(names(r)).toEqual([uid(1)]);
    const debug = f.logs.filter(isIgnored);
    expect(debug.map((l) => l["type"])).toEqual(["type.googleapis.com/envoy.config.cluster.v3.Cluster", ADDRESS_TYPE]);
    expect(Object.keys(f.xds.clients()[0]!.types).sort()).toEqual(TYPES.slice().sort());
  });

  it("honours explicit subscribe and unsubscribe names", async () => {
    const f = await start();
    const c = f.connect("explicit");
    c.send({ type_url: ADDRESS_TYPE, resource_names_subscribe: [uid(1)] });
    const r = await c.next(ADDRESS_TYPE);
    expect(names(r)).toEqual([uid(1)]);
    c.ack(r);
    c.send({ type_url: ADDRESS_TYPE, resource_names_subscribe: [uid(2)], resource_names_unsubscribe: [uid(1)] });
    const r2 = await c.next(ADDRESS_TYPE);
    expect(names(r2)).toEqual([uid(2)]);
    c.ack(r2);
    f.store.apply({ workloads: [podWorkload(1, { node: "x" }), podWorkload(3, { node: "x" }), podWorkload(2, { node: "x" })] });
    expect(names(await c.next(ADDRESS_TYPE))).toEqual([uid(2)]);
  });

  it("ends a stream UNAUTHENTICATED when authenticate rejects, and names the caller when it accepts", async () => {
    const f = await start(baseSnapshot(), async (md) => {
      const token = md.get("authorization")[0];
      if (token !== "Bearer good") throw new Error("token not accepted");
      return { name: "system:serviceaccount:istio-system:ztunnel" };
    });
    const bad = f.connect("intruder", { metadata: (() => { const m = new grpc.Metadata(); m.set("authorization", "Bearer bad"); return m; })() });
    bad.subscribe(TYPES);
    const status = await bad.ended;
    expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(status.details).toBe("authentication failed"); // opaque: the reason is in the log
    expect(bad.responses).toEqual([]);
    expect(f.logs.filter((l) => l["code"] === "XDS_CLIENT_UNAUTHENTICATED")).toHaveLength(1);
    const good = f.connect("friend", { metadata: (() => { const m = new grpc.Metadata(); m.set("authorization", "Bearer good"); return m; })() });
    await synced(good);
    expect(f.xds.clients().map((s) => [s.id, s.caller])).toEqual([["friend", "system:serviceaccount:istio-system:ztunnel"]]);
  });

  it("a replace diffs the whole set", async () => {
    const f = await start();
    const c = f.connect("replace");
    await synced(c);
    f.store.replace({ workloads: [podWorkload(1), podWorkload(2, { node: "other" }), podWorkload(4)], services: [service(0)], policies: [] });
    const a = await c.next(ADDRESS_TYPE);
    expect(names(a)).toEqual([uid(2), uid(4)].sort());
    expect(a.removed_resources).toEqual([uid(3)]);
    const z = await c.next(AUTHORIZATION_TYPE);
    expect(z.removed_resources).toEqual(["ns-1/allow-ns"]);
  });

  it("50 clients all reach the same versions after a change, the change encoded once", async () => {
    const workloads: Workload[] = [];
    for (let i = 0; i < 200; i++) workloads.push(podWorkload(i));
    const f = await start({ workloads, services: [service(0), service(1)], policies: [policy("p", "ns-0")] });
    const clients: RawAdsClient[] = [];
    for (let i = 0; i < 50; i++) clients.push(f.connect(`ztunnel-${i}`, { autoAck: true }));
    for (const c of clients) c.subscribe(TYPES);
    await allAcked(f.xds, 50);
    const before = f.xds.stats().encodes;
    f.store.apply({ workloads: [podWorkload(7, { status: "Unhealthy" })], removedWorkloads: [uid(8)] });
    await until("all 50 updated", () => clients.every((c) => c.responses.filter((r) => r.type_url === ADDRESS_TYPE).length === 2));
    await allAcked(f.xds, 50);
    expect(f.xds.stats().encodes - before).toBe(1);
    const want = clients[0]!.held.get(ADDRESS_TYPE)!;
    expect(want.size).toBe(201); // 199 workloads, 2 services
    expect(want.has(uid(8))).toBe(false);
    for (const c of clients) {
      expect(c.held.get(ADDRESS_TYPE)).toEqual(want);
      expect(c.held.get(AUTHORIZATION_TYPE)?.size).toBe(1);
      const last = c.responses.filter((r) => r.type_url === ADDRESS_TYPE).at(-1)!;
      expect(names(last)).toEqual([uid(7)]);
      expect(last.removed_resources).toEqual([uid(8)]);
    }
    expect(f.xds.stats()).toMatchObject({ clients: 50, nacks: 0, pushes: 150 });
  });

  it("a client that stops reading holds back no other client", async () => {
    const workloads: Workload[] = [];
    for (let i = 0; i < 3000; i++) workloads.push(podWorkload(i));
    const f = await start({ workloads, services: [], policies: [] });
    const slow = f.connect("slow");
    slow.pause();
    slow.subscribe(TYPES);
    const fast = f.connect("fast", { autoAck: true });
    fast.subscribe(TYPES);
    await until("fast synced", () => fast.held.get(ADDRESS_TYPE)?.size === 3000 && fast.held.get(AUTHORIZATION_TYPE) !== undefined);
    for (let k = 1; k <= 5; k++) {
      f.store.apply({ workloads: [podWorkload(k, { node: `moved-${k}` })] });
      await until(`change ${k} at the fast client`, () => fast.responses.filter((r) => r.type_url === ADDRESS_TYPE).length === k + 1);
    }
    // The slow one (about 750 KB unread, not ACKed) still has its first response in flight, and nothing else was queued for it.
    expect(slow.responses).toEqual([]);
    const st = f.xds.clients().find((c) => c.id === "slow")!.types[ADDRESS_TYPE]!;
    expect(st.inFlight).toBe(true);
    expect(st.lastNonceAcked).toBeNull();
    slow.resume();
    const first = await slow.next(ADDRESS_TYPE);
    expect(first.resources).toHaveLength(3000);
    slow.ack(first);
    // Everything that changed meanwhile, in one response.
    const caught = await slow.next(ADDRESS_TYPE);
    expect(names(caught)).toEqual([1, 2, 3, 4, 5].map(uid).sort());
  });

  it("a connection that takes no more bytes gets no more responses queued, even were its client to ACK what it has not read", async () => {
    const f = await start();
    const relay = await startRelay(f.tls.port);
    open.push(() => relay.close());
    const slow = connectRawAds(relay.port, f.tls.rootPem, { nodeId: "stuck" });
    open.push(() => slow.close());
    await synced(slow);
    await allAcked(f.xds, 1);
    relay.hold();
    // About 750 KB: far more than HTTP/2 lets out without the client's window updates.
    const many: Workload[] = [];
    for (let i = 100; i < 3100; i++) many.push(podWorkload(i));
    f.store.apply({ workloads: many });
    const status = (): ReturnType<XdsServer["clients"]>[number]["types"][string] => f.xds.clients()[0]!.types[ADDRESS_TYPE]!;
    await until("the big response sent", () => status().resources === 3004);
    const bigNonce = status().lastNonceSent!;
    // The nonce as the status shows it: an ACK the client could not have made from what it read.
    slow.send({ type_url: ADDRESS_TYPE, response_nonce: bigNonce });
    await until("the ACK seen", () => status().lastNonceAcked === bigNonce);
    f.store.apply({ workloads: [podWorkload(1, { node: "moved" })] });
    await new Promise((r) => setTimeout(r, 100));
    expect(status().lastNonceSent).toBe(bigNonce);
    relay.release();
    const big = await slow.next(ADDRESS_TYPE);
    expect(big.resources).toHaveLength(3000);
    const after = await slow.next(ADDRESS_TYPE);
    expect(names(after)).toEqual([uid(1)]);
  });

  it("close() ends every stream UNAVAILABLE and forgets the clients", async () => {
    const f = await start();
    const c = f.connect("closing");
    await synced(c);
    f.xds.close();
    expect((await c.ended).code).toBe(grpc.status.UNAVAILABLE);
    expect(f.xds.clients()).toEqual([]);
  });
});

describe("xDS server limits and who may read (real grpc-js server on 127.0.0.1)", () => {
  const NODE_A = "ztunnel~10.0.0.1~zt-a.istio-system~istio-system.svc.cluster.local";
  const podA = async (): Promise<XdsCaller> => ({ name: "istio-system/ztunnel (pod zt-a)", pod: "zt-a.istio-system" });
  const manyNames = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `ns-x/name-${from + i}`);

  it("a stream subscribing more explicit names than max(10,000, 2 x the table) ends RESOURCE_EXHAUSTED, logged once with the caller", async () => {
    const f = await start();
    // All at once in the first request.
    const bulk = f.connect("bulk");
    bulk.send({ type_url: ADDRESS_TYPE, resource_names_subscribe: manyNames(10_001) });
    const st = await bulk.ended;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // Or a little at a time: the names are counted across requests.
    const drip = f.connect("drip");
    drip.send({ type_url: ADDRESS_TYPE, resource_names_subscribe: manyNames(6_000) });
    const r = await drip.next(ADDRESS_TYPE);
    drip.ack(r);
    drip.send({ type_url: ADDRESS_TYPE, resource_names_subscribe: manyNames(6_000, 6_000) });
    expect((await drip.ended).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await until("both gone", () => f.xds.clients().length === 0);
    const logs = f.logs.filter((l) => l["code"] === "XDS_CLIENT_OVER_LIMIT");
    expect(logs.map((l) => l["client"])).toEqual(["bulk", "drip"]);
    expect(logs[0]).toMatchObject({ caller: "test client", limit: 10_000 });
    // Under the limit is served as before.
    const fine = f.connect("fine");
    fine.send({ type_url: ADDRESS_TYPE, resource_names_subscribe: [...manyNames(9_000), uid(1)] });
    expect(names(await fine.next(ADDRESS_TYPE))).toEqual([uid(1)]);
  });

  it("a caller pod holds at most 2 streams: a third ends RESOURCE_EXHAUSTED, the older ones kept; one ending makes room", async () => {
    const f = await start(baseSnapshot(), podA);
    const one = f.connect(NODE_A);
    await synced(one);
    const two = f.connect(NODE_A);
    await synced(two);
    const three = f.connect(NODE_A);
    three.subscribe(TYPES);
    expect((await three.ended).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(three.responses).toEqual([]);
    expect(f.xds.clients()).toHaveLength(2);
    expect(f.logs.filter((l) => l["code"] === "XDS_CLIENT_OVER_LIMIT")).toHaveLength(1);
    one.close();
    await until("one gone", () => f.xds.clients().length === 1);
    const four = f.connect(NODE_A);
    await synced(four);
    expect(f.xds.clients()).toHaveLength(2);
  });

  it("the node id must name the token's pod: another pod's ends PERMISSION_DENIED (opaque), logged with the reason", async () => {
    const f = await start(baseSnapshot(), podA);
    const other = f.connect("ztunnel~10.0.0.2~zt-b.istio-system~istio-system.svc.cluster.local");
    other.subscribe(TYPES);
    const st = await other.ended;
    expect(st.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(st.details).not.toContain("zt-a");
    expect(other.responses).toEqual([]);
    const noId = f.connect("");
    noId.subscribe(TYPES);
    expect((await noId.ended).code).toBe(grpc.status.PERMISSION_DENIED);
    const forbidden = f.logs.filter((l) => l["code"] === "XDS_CLIENT_FORBIDDEN");
    expect(forbidden).toHaveLength(2);
    expect(forbidden[0]).toMatchObject({ caller: "istio-system/ztunnel (pod zt-a)", nodeId: "ztunnel~10.0.0.2~zt-b.istio-system~istio-system.svc.cluster.local" });
    const own = f.connect(NODE_A);
    await synced(own);
    expect(f.xds.clients().map((c) => [c.id, c.caller])).toEqual([[NODE_A, "istio-system/ztunnel (pod zt-a)"]]);
  });

  it("an XdsRefusal ends the stream with its status and an opaque message: UNAVAILABLE (authentication unavailable), PERMISSION_DENIED", async () => {
    let next: XdsRefusal = new XdsRefusal(grpc.status.UNAVAILABLE, "TokenReview: connect ECONNREFUSED");
    const f = await start(baseSnapshot(), async () => {
      throw next;
    });
    const a = f.connect(NODE_A);
    a.subscribe(TYPES);
    expect(await a.ended).toMatchObject({ code: grpc.status.UNAVAILABLE, details: "cannot authenticate the caller now; try again" });
    next = new XdsRefusal(grpc.status.PERMISSION_DENIED, "default/sleep is not a trusted node account");
    const b = f.connect(NODE_A);
    b.subscribe(TYPES);
    const st = await b.ended;
    expect(st.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(st.details).not.toContain("sleep");
    expect(f.logs.filter((l) => l["code"] === "TOKEN_REVIEW_FAILED")).toMatchObject([{ err: "TokenReview: connect ECONNREFUSED", level: 50 }]);
    expect(f.logs.filter((l) => l["code"] === "XDS_CLIENT_FORBIDDEN")).toMatchObject([{ err: "default/sleep is not a trusted node account" }]);
  });

  it("a stream that neither ACKs nor NACKs its first response of a type is ended (DEADLINE_EXCEEDED); one that answered stays", async () => {
    const f = await start(baseSnapshot(), acceptEveryCaller, { firstAckTimeoutMs: 300 });
    const good = f.connect("answers");
    await synced(good);
    await allAcked(f.xds, 1);
    const silent = f.connect("silent");
    silent.subscribe(TYPES);
    await silent.next(ADDRESS_TYPE);
    expect((await silent.ended).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(f.xds.clients().map((c) => c.id)).toEqual(["answers"]);
    expect(f.logs.filter((l) => l["code"] === "XDS_CLIENT_OVER_LIMIT").map((l) => l["client"])).toEqual(["silent"]);
    // Later responses are not on that clock: the good client, not ACKing a later one, is kept until the sweep has run again.
    f.store.apply({ workloads: [podWorkload(1, { node: "later" })] });
    await good.next(ADDRESS_TYPE);
    const again = f.connect("silent-2");
    again.subscribe([ADDRESS_TYPE]);
    await again.next(ADDRESS_TYPE);
    expect((await again.ended).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(f.xds.clients().map((c) => c.id)).toEqual(["answers"]);
  });

  it("close() refuses the streams still authenticating (UNAVAILABLE), and one whose authentication ends after close() never starts", async () => {
    const waiting: ((c: XdsCaller) => void)[] = [];
    const f = await start(baseSnapshot(), () => new Promise<XdsCaller>((resolve) => waiting.push(resolve)));
    const a = f.connect("pending-a");
    a.subscribe(TYPES);
    const b = f.connect("pending-b");
    b.subscribe(TYPES);
    await until("both authenticating", () => waiting.length === 2);
    f.xds.close();
    waiting[1]!({ name: "late" });
    const bounded = (p: Promise<grpc.StatusObject>): Promise<grpc.StatusObject | "still open"> => Promise.race([p, new Promise<"still open">((r) => setTimeout(() => r("still open"), 5_000))]);
    expect(await bounded(a.ended)).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(await bounded(b.ended)).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(b.responses).toEqual([]);
    expect(f.xds.clients()).toEqual([]);
  });

  it("a NACK's error_detail is kept and logged cut to about 1 KiB", async () => {
    const f = await start();
    const c = f.connect("verbose");
    await synced(c);
    f.store.apply({ workloads: [podWorkload(1, { node: "elsewhere" })] });
    const r = await c.next(ADDRESS_TYPE);
    c.nack(r, "x".repeat(100_000));
    await until("the NACK seen", () => f.xds.stats().nacks === 1);
    const kept = f.xds.clients()[0]!.types[ADDRESS_TYPE]!.lastNack!.message;
    expect(kept.length).toBeLessThanOrEqual(MAX_NACK_DETAIL + 40);
    expect(kept.startsWith("x".repeat(MAX_NACK_DETAIL))).toBe(true);
    const log = f.logs.find((l) => l["code"] === "XDS_CLIENT_NACK")!;
    expect(String(log["detail"]).length).toBeLessThanOrEqual(MAX_NACK_DETAIL + 40);
    expect(String(log["msg"]).length).toBeLessThanOrEqual(MAX_NACK_DETAIL + 200);
  });

  it("sends a change's policies before its addresses, though the client subscribed Address first", async () => {
    const f = await start();
    const c = f.connect("order");
    await synced(c); // Address subscribed first
    await allAcked(f.xds, 1);
    const order: string[] = []; // as received (next() reorders `responses`)
    c.onResponse = (r) => order.push(r.type_url);
    // A new selector policy and the workload that now names it, in one change.
    f.store.apply({ policies: [policy("allow-ns", "ns-1"), policy("by-app", "ns-1", { scope: "WorkloadSelector", selector: new Map([["app", "app-0"]]) })] });
    await c.next(ADDRESS_TYPE);
    await c.next(AUTHORIZATION_TYPE);
    expect(order).toEqual([AUTHORIZATION_TYPE, ADDRESS_TYPE]);
  });
});
