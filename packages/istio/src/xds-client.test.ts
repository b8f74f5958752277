import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { decodeAddress, decodeAuthorization } from "./codec.js";
import { ADDRESS_TYPE, AUTHORIZATION_TYPE, type DeltaRequest } from "./messages.js";
import { PEER_HOSTNAME, startXdsPeer, type PeerStream, type XdsPeer } from "./test-support/xds-peer.js";
import { authorizationResource, serviceResource, wireAuthorization, wireService, wireWorkload, workloadResource } from "./test-support/xds-resources.js";
import { policyFromWire, serviceFromWire, workloadFromWire } from "./workload-api.js";
import { startXdsClient, type XdsClient, type XdsLogger, type XdsTypeHandler } from "./xds-client.js";

// The client against a FAKE xDS server (real gRPC over TLS on loopback) that each test scripts.

interface Line {
  readonly level: string;
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

/** A FAKE logger keeping the lines. */
function fakeLogger(lines: Line[]): XdsLogger {
  const at = (level: string) => (obj: object, msg: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug") };
}

/** What the handlers applied, by type: the live names and each apply call. */
class Applied {
  readonly names = new Map<string, Set<string>>([
    [ADDRESS_TYPE, new Set()],
    [AUTHORIZATION_TYPE, new Set()],
  ]);
  readonly calls: { type: string; upserts: string[]; removed: string[] }[] = [];
  handler(type: string, decode: (b: Uint8Array) => unknown): XdsTypeHandler<unknown> {
    return {
      decode: (_name, body) => decode(body),
      apply: (upserts, removed) => {
        this.calls.push({ type, upserts: [...upserts.keys()], removed: [...removed] });
        for (const r of removed) this.names.get(type)!.delete(r);
        for (const n of upserts.keys()) this.names.get(type)!.add(n);
      },
    };
  }
}

const DEFAULTS = { trustDomain: "cluster.local", clusterId: "Kubernetes" };
const decodeAddr = (b: Uint8Array): unknown => {
  const a = decodeAddress(b);
  if (a.workload) return workloadFromWire(a.workload, DEFAULTS);
  if (a.service) return serviceFromWire(a.service);
  throw new Error("neither a workload nor a service");
};

async function until<T>(what: string, fn: () => T, ok: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let peer: XdsPeer;
let dir: string;
let tokenFile: string;
let client: XdsClient | undefined;
let lines: Line[];
let applied: Applied;

beforeEach(async () => {
  peer = await startXdsPeer();
  dir = mkdtempSync(path.join(tmpdir(), "zt-xds-client-"));
  writeFileSync(path.join(dir, "root.pem"), peer.rootPem);
  tokenFile = path.join(dir, "token");
  writeFileSync(tokenFile, "tok-1\n");
  lines = [];
  applied = new Applied();
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await peer.kill();
  rmSync(dir, { recursive: true, force: true });
});

function start(): XdsClient {
  client = startXdsClient({
    address: peer.address,
    rootCaFile: path.join(dir, "root.pem"),
    altHostname: PEER_HOSTNAME,
    tokenFile,
    node: { ip: "10.0.0.5", podName: "ztunnel-abc", podNamespace: "istio-system", nodeName: "node-a", clusterId: "Kubernetes" },
    types: new Map([
      [ADDRESS_TYPE, applied.handler(ADDRESS_TYPE, decodeAddr)],
      [AUTHORIZATION_TYPE, applied.handler(AUTHORIZATION_TYPE, (b) => policyFromWire(decodeAuthorization(b)))],
    ]),
    logger: fakeLogger(lines),
    backoff: { initialMs: 20, maxMs: 100 },
  });
  return client;
}

/** A new stream and its two initial requests, by type. */
async function opened(): Promise<{ s: PeerStream; initial: Map<string, Required<DeltaRequest>> }> {
  const s = await peer.nextStream();
  const initial = new Map<string, Required<DeltaRequest>>();
  for (let i = 0; i < 2; i++) {
    const r = await s.next();
    initial.set(r.type_url, r);
  }
  return { s, initial };
}

describe("delta ADS client against a FAKE xDS server", () => {
  test("opens one stream with the token and cluster id, and subscribes wildcard to each type with the node", async () => {
    start();
    const { s, initial } = await opened();
    expect([s.token, s.clusterId]).toEqual(["tok-1", "Kubernetes"]);
    expect([...initial.keys()]).toEqual([ADDRESS_TYPE, AUTHORIZATION_TYPE]);
    for (const r of initial.values()) {
      expect(r.resource_names_subscribe).toEqual([]);
      expect(r.initial_resource_versions).toEqual({});
      expect(r.response_nonce).toBe("");
      expect(r.node?.id).toBe("ztunnel~10.0.0.5~ztunnel-abc.istio-system~istio-system.svc.cluster.local");
      expect(r.node?.metadata).toEqual({ NAME: "ztunnel-abc", NAMESPACE: "istio-system", INSTANCE_IPS: "10.0.0.5", NODE_NAME: "node-a", CLUSTER_ID: "Kubernetes" });
    }
    await until("connected", () => client!.status().state, (x) => x === "connected");
    expect(client!.pending()).toEqual([`waiting for the first xDS response of ${ADDRESS_TYPE}`, `waiting for the first xDS response of ${AUTHORIZATION_TYPE}`]);
  });

  test("ACKs a good response after applying all of it at once", async () => {
    start();
    const { s } = await opened();
    s.send({ type_url: ADDRESS_TYPE, nonce: "n1", resources: [workloadResource(wireWorkload("Kubernetes//Pod/default/a", "10.1.0.1")), serviceResource(wireService("echo.default.svc.cluster.local", "10.96.0.1"))], removed_resources: [] });
    const ack = await s.next();
    expect([ack.type_url, ack.response_nonce, ack.error_detail]).toEqual([ADDRESS_TYPE, "n1", undefined]);
    expect(applied.calls).toEqual([{ type: ADDRESS_TYPE, upserts: ["Kubernetes//Pod/default/a", "default/echo.default.svc.cluster.local"], removed: [] }]);
    expect(client!.status().types[ADDRESS_TYPE]).toEqual({ synced: true, ackedOnce: true, lastAckedNonce: "n1", resources: 2, lastNack: null });
    expect(client!.pending()).toEqual([`waiting for the first xDS response of ${AUTHORIZATION_TYPE}`]);
    s.send({ type_url: AUTHORIZATION_TYPE, nonce: "p1", resources: [authorizationResource(wireAuthorization("default", "allow-ns"))], removed_resources: [] });
    expect((await s.next()).response_nonce).toBe("p1");
    expect(client!.pending()).toEqual([]);
    expect(lines.filter((l) => l.level === "info" && l.msg.startsWith("first xDS response of")).length).toBe(2);
  });

  test("NACKs the resources it cannot serve, by name with the reason, and applies the rest", async () => {
    start();
    const { s } = await opened();
    const bad = wireWorkload("Kubernetes//Pod/default/bad-ip", "10.1.0.2", { addresses: [new Uint8Array([10, 1, 0, 2, 9])] });
    const waypoint = wireWorkload("Kubernetes//Pod/default/waypointed", "10.1.0.3", { waypoint: { hostname: { namespace: "default", hostname: "wp.default.svc.cluster.local" }, hbone_mtls_port: 15008 } });
    s.send({ type_url: ADDRESS_TYPE, nonce: "n1", resources: [workloadResource(wireWorkload("Kubernetes//Pod/default/good", "10.1.0.1")), workloadResource(bad), workloadResource(waypoint)], removed_resources: [] });
    const nack = await s.next();
    expect(nack.response_nonce).toBe("n1");
    expect(nack.error_detail?.code).toBe(3);
    expect(nack.error_detail?.message).toMatch(/^refused 2 of 3 resource\(s\): Kubernetes\/\/Pod\/default\/bad-ip: workload Kubernetes\/\/Pod\/default\/bad-ip: .*5 bytes.*; Kubernetes\/\/Pod\/default\/waypointed: .*waypoint/);
    expect(nack.error_detail?.message).not.toContain("default/good");
    expect([...applied.names.get(ADDRESS_TYPE)!]).toEqual(["Kubernetes//Pod/default/good"]);
    const st = client!.status().types[ADDRESS_TYPE]!;
    expect([st.synced, st.ackedOnce, st.lastAckedNonce, st.resources, st.lastNack?.nonce, st.lastNack?.detail]).toEqual([true, false, null, 1, "n1", nack.error_detail?.message]);
    // Synced though NACKed: readiness waits only for the type that has had no response.
    expect(client!.pending()).toEqual([`waiting for the first xDS response of ${AUTHORIZATION_TYPE}`]);
    const warned = lines.filter((l) => l.level === "warn");
    expect(warned.length).toBe(1);
    expect(warned[0]!.obj["refused"]).toEqual(["Kubernetes//Pod/default/bad-ip", "Kubernetes//Pod/default/waypointed"]);
  });

  test("removes what the server removes, and ignores (counting) a removal of a name it never had", async () => {
    start();
    const { s } = await opened();
    s.send({ type_url: ADDRESS_TYPE, nonce: "n1", resources: [workloadResource(wireWorkload("w/a", "10.1.0.1")), workloadResource(wireWorkload("w/b", "10.1.0.2"))], removed_resources: [] });
    await s.next();
    s.send({ type_url: ADDRESS_TYPE, nonce: "n2", resources: [], removed_resources: ["w/a", "never/sent"] });
    const ack = await s.next();
    expect([ack.response_nonce, ack.error_detail]).toEqual(["n2", undefined]);
    expect(applied.calls.at(-1)).toEqual({ type: ADDRESS_TYPE, upserts: [], removed: ["w/a"] });
    expect([...applied.names.get(ADDRESS_TYPE)!]).toEqual(["w/b"]);
    expect([client!.status().ignoredRemovals, client!.status().types[ADDRESS_TYPE]!.resources]).toEqual([1, 1]);
  });

  test("NACKs a response of a type it did not subscribe to, applying nothing", async () => {
    start();
    const { s } = await opened();
    s.send({ type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster", nonce: "x1", resources: [workloadResource(wireWorkload("w/a", "10.1.0.1"))], removed_resources: [] });
    const nack = await s.next();
    expect([nack.type_url, nack.response_nonce]).toEqual(["type.googleapis.com/envoy.config.cluster.v3.Cluster", "x1"]);
    expect(nack.error_detail?.message).toMatch(/was not subscribed to/);
    expect(applied.calls).toEqual([]);
    expect(client!.status().unknownTypeResponses).toBe(1);
  });

  test("refuses a name sent twice in one response, a body of another type, and a resource without a body", async () => {
    start();
    const { s } = await opened();
    const other = { ...authorizationResource(wireAuthorization("default", "p")), name: "w/other" };
    s.send({
      type_url: ADDRESS_TYPE,
      nonce: "n1",
      resources: [workloadResource(wireWorkload("w/twice", "10.1.0.1")), workloadResource(wireWorkload("w/ok", "10.1.0.2")), workloadResource(wireWorkload("w/twice", "10.1.0.3")), other, { name: "w/empty", version: "1" }],
      removed_resources: [],
    });
    const nack = await s.next();
    expect(nack.error_detail?.message).toMatch(/^refused 3 of 5 resource\(s\): /);
    expect(nack.error_detail?.message).toContain("w/twice: named more than once in one response");
    expect(nack.error_detail?.message).toContain(`w/other: is a "${AUTHORIZATION_TYPE}", not the response's ${ADDRESS_TYPE}`);
    expect(nack.error_detail?.message).toContain("w/empty: has no body");
    expect([...applied.names.get(ADDRESS_TYPE)!]).toEqual(["w/ok"]);
  });

  test("reconnects after the stream fails, re-reading the token, with initial_resource_versions of exactly what it applied", async () => {
    start();
    const { s } = await opened();
    const bad = wireWorkload("w/bad", "10.1.0.9", { tunnel_protocol: "LEGACY_ISTIO_MTLS" });
    s.send({ type_url: ADDRESS_TYPE, nonce: "n1", resources: [workloadResource(wireWorkload("w/a", "10.1.0.1"), "v3"), workloadResource(bad, "v9"), serviceResource(wireService("echo.default.svc.cluster.local", "10.96.0.1"), "v7")], removed_resources: [] });
    await s.next();
    s.send({ type_url: AUTHORIZATION_TYPE, nonce: "p1", resources: [authorizationResource(wireAuthorization("default", "allow"), "v1")], removed_resources: [] });
    await s.next();
    writeFileSync(tokenFile, "tok-2\n");
    s.fail(grpc.status.UNAVAILABLE, "FAKE restart");
    const again = await opened();
    expect(again.s.token).toBe("tok-2");
    expect(again.initial.get(ADDRESS_TYPE)!.initial_resource_versions).toEqual({ "w/a": "v3", "default/echo.default.svc.cluster.local": "v7" });
    expect(again.initial.get(AUTHORIZATION_TYPE)!.initial_resource_versions).toEqual({ "default/allow": "v1" });
    expect(again.initial.get(ADDRESS_TYPE)!.resource_names_subscribe).toEqual([]);
    const st = await until("connected again", () => client!.status(), (x) => x.state === "connected");
    expect(st.reconnects).toBe(1);
    expect(st.lastError).toMatchObject({ code: "XDS_UNREACHABLE", message: expect.stringContaining("FAKE restart") });
    // Nothing removed on the way: the state is kept until the server says otherwise.
    expect(applied.calls.every((c) => c.removed.length === 0)).toBe(true);
    expect([...applied.names.get(ADDRESS_TYPE)!]).toEqual(["w/a", "default/echo.default.svc.cluster.local"]);
  });

  test("a server killed mid-stream: backs off, keeps its state, and resumes when the server is back", async () => {
    start();
    const { s } = await opened();
    s.send({ type_url: ADDRESS_TYPE, nonce: "n1", resources: [workloadResource(wireWorkload("w/a", "10.1.0.1"), "v1")], removed_resources: [] });
    await s.next();
    await peer.kill();
    await until("backing off", () => client!.status(), (x) => x.state !== "connected" && x.lastError !== null && x.reconnects >= 2);
    expect(client!.status().lastError?.code).toBe("XDS_UNREACHABLE");
    // One line for the outage, however many retries.
    const errors = lines.filter((l) => l.level === "warn" && l.obj["code"] === "XDS_UNREACHABLE");
    expect(new Set(errors.map((l) => l.msg)).size).toBe(errors.length);
    expect(client!.status().types[ADDRESS_TYPE]).toMatchObject({ ackedOnce: true, resources: 1 });
    await peer.restart();
    const again = await opened();
    expect(again.initial.get(ADDRESS_TYPE)!.initial_resource_versions).toEqual({ "w/a": "v1" });
    again.s.send({ type_url: ADDRESS_TYPE, nonce: "n2", resources: [], removed_resources: [] });
    expect((await again.s.next()).response_nonce).toBe("n2");
    expect(client!.status().state).toBe("connected");
    expect([...applied.names.get(ADDRESS_TYPE)!]).toEqual(["w/a"]);
    expect(lines.some((l) => l.msg.includes("answering again"))).toBe(true);
  });

  test("a server refusing the token is XDS_REFUSED, logged as an error once, and retried", async () => {
    start();
    (await opened()).s.fail(grpc.status.UNAUTHENTICATED, "FAKE: token not accepted");
    (await opened()).s.fail(grpc.status.UNAUTHENTICATED, "FAKE: token not accepted");
    await peer.nextStream();
    const st = client!.status();
    expect(st.lastError).toMatchObject({ code: "XDS_REFUSED", message: `xDS stream to ${peer.address} failed: UNAUTHENTICATED: FAKE: token not accepted` });
    expect(lines.filter((l) => l.level === "error" && l.obj["code"] === "XDS_REFUSED").length).toBe(1);
    expect(client!.pending()[0]).toBe(`waiting for the first xDS response of ${ADDRESS_TYPE} (XDS_REFUSED: ${st.lastError!.message})`);
  });

  test("an unreadable root certificate or token file is reported by name and retried, without a stream", async () => {
    rmSync(tokenFile);
    start();
    const st = await until("refused", () => client!.status(), (x) => x.lastError !== null);
    expect(st.lastError?.code).toBe("XDS_REFUSED");
    expect(st.lastError?.message).toMatch(/^cannot read the token for the xDS server .*token \(AUTH_TOKEN\): ENOENT/);
    rmSync(path.join(dir, "root.pem"));
    await until("no root", () => client!.status().lastError?.message ?? "", (m) => m.includes("(XDS_ROOT_CA)"));
    expect(peer.streams.length).toBe(0);
    writeFileSync(path.join(dir, "root.pem"), peer.rootPem);
    writeFileSync(tokenFile, "tok-late");
    expect((await peer.nextStream()).token).toBe("tok-late");
  });

  test("close() during backoff leaves no timer or socket behind", async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r === "Timeout" || r === "TCPSocketWrap" || r === "TLSWrap").length;
    start();
    await opened();
    await peer.kill();
    await until("backing off", () => client!.status().state, (x) => x === "backoff");
    client!.close();
    expect(client!.status().state).toBe("closed");
    const after = await until("handles released", () => process.getActiveResourcesInfo().filter((r) => r === "Timeout" || r === "TCPSocketWrap" || r === "TLSWrap").length, (n) => n <= before);
    expect(after).toBeLessThanOrEqual(before);
  });

  test("a first response over grpc-js's 4 MiB default is applied whole, with one log line", async () => {
    start();
    const { s } = await opened();
    const resources = Array.from({ length: 40_000 }, (_, i) => workloadResource(wireWorkload(`Kubernetes//Pod/default/pod-${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)));
    expect(resources.reduce((n, r) => n + r.resource!.value.length + r.name.length, 0)).toBeGreaterThan(4 * 1024 * 1024);
    s.send({ type_url: ADDRESS_TYPE, nonce: "big", resources, removed_resources: [] });
    const ack = await s.next(30_000);
    expect([ack.response_nonce, ack.error_detail]).toEqual(["big", undefined]);
    expect(applied.calls.length).toBe(1);
    expect(applied.names.get(ADDRESS_TYPE)!.size).toBe(40_000);
    expect(lines.filter((l) => l.level !== "debug").length).toBe(1);
  }, 60_000);
});
