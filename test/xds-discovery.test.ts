import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { httpGet, startLoopbackMesh, type LoopbackMesh } from "@zt/harness";
import { ADDRESS_TYPE, AUTHORIZATION_TYPE } from "@zt/istio";
import { PEER_HOSTNAME, startXdsPeer, type PeerStream, type XdsPeer } from "../packages/istio/src/test-support/xds-peer.js";
import { authorizationResource, serviceResource, wireAuthorization, wireService, wireWorkload, workloadResource } from "../packages/istio/src/test-support/xds-resources.js";
import { until } from "./support/metrics.js";

// A real agent (`ztunnel run`, XDS_ADDRESS set) follows a FAKE xDS server (real gRPC over
// TLS on loopback, scripted by the test): readiness, the store and /config_dump's source.
const NET = 93;
const SLEEP = `127.${NET}.1.10`;
const ECHO_UID = "Kubernetes//Pod/default/echo";
const SLEEP_UID = "Kubernetes//Pod/default/sleep";
const WAYPOINTED = "Kubernetes//Pod/default/waypointed";
const dir = mkdtempSync(path.join(tmpdir(), "zt-xds-agent-"));
let peer: XdsPeer;
let mesh: LoopbackMesh;
let stream: PeerStream;

const ready = (): Promise<{ status: number; body: string }> => httpGet(`${mesh.host(0)}:15021`, "/healthz/ready");
const dump = async (): Promise<any> => JSON.parse((await httpGet(`${mesh.host(0)}:15000`, "/config_dump")).body);

beforeAll(async () => {
  peer = await startXdsPeer();
  writeFileSync(path.join(dir, "root.pem"), peer.rootPem);
  writeFileSync(path.join(dir, "token"), "agent-token\n");
  mesh = await startLoopbackMesh({
    net: NET,
    nodes: ["node-a"],
    env: {
      XDS_ADDRESS: peer.address,
      XDS_ROOT_CA: path.join(dir, "root.pem"),
      ALT_XDS_HOSTNAME: PEER_HOSTNAME,
      AUTH_TOKEN: path.join(dir, "token"),
      POD_NAME: "ztunnel-a",
      POD_NAMESPACE: "istio-system",
      INSTANCE_IP: `127.${NET}.1.1`,
      CLUSTER_ID: "Kubernetes",
    },
    waitFor: "answering",
  });
}, 60_000);
afterAll(async () => {
  await mesh?.stop();
  await peer?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe("discovery from an xDS server, through a real agent", () => {
  test("the agent subscribes with its node and token, and is not ready until both types have had a response applied", async () => {
    stream = await peer.nextStream(20_000);
    expect([stream.token, stream.clusterId]).toEqual(["agent-token", "Kubernetes"]);
    const initial = [await stream.next(), await stream.next()];
    expect(initial.map((r) => r.type_url)).toEqual([ADDRESS_TYPE, AUTHORIZATION_TYPE]);
    expect(initial[0]!.node?.id).toBe(`ztunnel~127.${NET}.1.1~ztunnel-a.istio-system~istio-system.svc.cluster.local`);
    expect(initial[0]!.node?.metadata).toMatchObject({ NAME: "ztunnel-a", NAMESPACE: "istio-system", NODE_NAME: "node-a", CLUSTER_ID: "Kubernetes" });
    const r = await until("not ready, waiting for xDS", () => ready(), (x) => x.status === 503 && x.body.includes(`waiting for the first xDS response of ${ADDRESS_TYPE}`));
    expect(r.body).toContain(`waiting for the first xDS response of ${AUTHORIZATION_TYPE}`);
    expect(mesh.agents[0]!.logs.some((l) => String(l["msg"]).startsWith(`workloads, services and policies come from the xDS server at ${peer.address}`))).toBe(true);

    // One resource it cannot serve: NACKed by name, the rest applied; Address counts as synced (a mesh with one
    // waypoint must not keep every agent unready), Authorization is still awaited.
    const sleep = workloadResource(wireWorkload(SLEEP_UID, SLEEP, { authorization_policies: ["default/allow-sleep"] }), "v1");
    const waypointed = workloadResource(wireWorkload(WAYPOINTED, `127.${NET}.2.11`, { node: "node-b", waypoint: { hostname: { namespace: "default", hostname: "wp.default.svc.cluster.local" }, hbone_mtls_port: 15008 } }));
    const echo = workloadResource(wireWorkload(ECHO_UID, `127.${NET}.2.10`, { node: "node-b", services: { "default/echo.default.svc.cluster.local": { ports: [{ service_port: 80, target_port: 8080 }] } } }));
    const svc = serviceResource(wireService("echo.default.svc.cluster.local", "10.96.93.1"));
    stream.send({ type_url: ADDRESS_TYPE, nonce: "a1", resources: [sleep, waypointed, echo, svc], removed_resources: [] });
    const nack = await stream.next();
    expect(nack.response_nonce).toBe("a1");
    expect(nack.error_detail?.message).toMatch(new RegExp(`^refused 1 of 4 resource\\(s\\): ${WAYPOINTED}: .*waypoint`));
    const r1 = await ready();
    expect(r1.status).toBe(503);
    expect(r1.body).not.toContain(`waiting for the first xDS response of ${ADDRESS_TYPE}`);
    expect(r1.body).toContain(`waiting for the first xDS response of ${AUTHORIZATION_TYPE}`);

    stream.send({ type_url: ADDRESS_TYPE, nonce: "a2", resources: [], removed_resources: [WAYPOINTED] });
    expect(await stream.next()).toMatchObject({ type_url: ADDRESS_TYPE, response_nonce: "a2", error_detail: undefined });
    const r2 = await ready();
    expect(r2.status).toBe(503);
    expect(r2.body).not.toContain(`waiting for the first xDS response of ${ADDRESS_TYPE}`);
    expect(r2.body).toContain(`waiting for the first xDS response of ${AUTHORIZATION_TYPE}`);

    stream.send({ type_url: AUTHORIZATION_TYPE, nonce: "p1", resources: [authorizationResource(wireAuthorization("default", "allow-sleep", { scope: "WORKLOAD_SELECTOR" }))], removed_resources: [] });
    expect(await stream.next()).toMatchObject({ type_url: AUTHORIZATION_TYPE, response_nonce: "p1", error_detail: undefined });
    await until("ready", () => ready(), (x) => x.status === 200, 10_000);
    expect(mesh.agents[0]!.logs.filter((l) => l["msg"] === "mesh state synced from the xDS server").length).toBe(1);
  }, 60_000);

  test("the store holds what was applied, and /config_dump's source shows the stream, the nonces and the last NACK", async () => {
    const d = await dump();
    expect(d.workloads.map((w: { uid: string }) => w.uid).sort()).toEqual([ECHO_UID, SLEEP_UID]);
    expect(d.services.map((s: { hostname: string }) => s.hostname)).toEqual(["echo.default.svc.cluster.local"]);
    expect(d.policies.map((p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`)).toEqual(["default/allow-sleep"]);
    expect(d.source).toMatchObject({ kind: "xds", address: peer.address, state: "connected", lastError: null, reconnects: 0, workloads: 2, services: 1, policies: 1 });
    expect(d.source.types[ADDRESS_TYPE]).toMatchObject({ ackedOnce: true, lastAckedNonce: "a2", resources: 3, lastNack: { nonce: "a1", detail: expect.stringContaining(WAYPOINTED) } });
    expect(d.source.types[AUTHORIZATION_TYPE]).toMatchObject({ ackedOnce: true, lastAckedNonce: "p1", resources: 1, lastNack: null });
    expect(d.warnings).toEqual([]);
  });

  test("a server that ends the stream: the agent reconnects with its versions and keeps serving its state", async () => {
    stream.fail();
    const again = await peer.nextStream(20_000);
    const initial = [await again.next(), await again.next()];
    expect(initial[0]!.initial_resource_versions).toEqual({ [SLEEP_UID]: "v1", [ECHO_UID]: "1", "default/echo.default.svc.cluster.local": "1" });
    expect(initial[1]!.initial_resource_versions).toEqual({ "default/allow-sleep": "1" });
    expect((await ready()).status).toBe(200);
    const d = await until("connected again", () => dump(), (x) => x.source.state === "connected" && x.source.reconnects === 1);
    expect(d.workloads.length).toBe(2);
    expect(d.source.lastError).toMatchObject({ code: "XDS_UNREACHABLE" });
  }, 30_000);
});
