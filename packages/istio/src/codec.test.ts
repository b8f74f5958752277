import { describe, expect, it } from "vitest";
import {
  decodeAddress,
  decodeAuthorization,
  decodeCaRequest,
  decodeCaResponse,
  decodeDeltaRequest,
  decodeDeltaResponse,
  encodeAddress,
  encodeAuthorization,
  encodeCaRequest,
  encodeCaResponse,
  encodeDeltaRequest,
  encodeDeltaResponse,
} from "./codec.js";
import { ADDRESS_TYPE, type WireAuthorization, type WireWorkload } from "./messages.js";
import { msg, packed, trees, type Field } from "./test-support/wire.js";

// Every expected byte below is built from the field numbers of shared/spec/istio-control-plane.md
// (and Envoy's discovery.proto), not from the definitions under test.
const structOf = (kv: Record<string, string>): Field[] => Object.entries(kv).map(([k, v]): Field => [1, "bytes", [[1, "bytes", k], [2, "bytes", [[3, "bytes", v]]]]]);

function same(actual: Uint8Array, expected: Field[]): void {
  const t = trees(actual, expected);
  expect(t.actual).toEqual(t.expected);
}

describe("CA messages", () => {
  const meta = { ImpersonatedIdentity: "spiffe://cluster.local/ns/a/sa/b" };
  const hand: Field[] = [
    [1, "bytes", "-----BEGIN CERTIFICATE REQUEST-----\n"],
    [3, "varint", 86400],
    [4, "bytes", structOf(meta)],
  ];

  it("IstioCertificateRequest: csr 1, validity_duration 3, metadata 4 (Struct)", () => {
    same(encodeCaRequest({ csr: "-----BEGIN CERTIFICATE REQUEST-----\n", validity_duration: 86400, metadata: meta }), hand);
    expect(decodeCaRequest(msg(hand))).toEqual({ csr: "-----BEGIN CERTIFICATE REQUEST-----\n", validity_duration: 86400, metadata: meta });
  });

  it("IstioCertificateResponse: cert_chain 1, repeated, in order", () => {
    const chain: Field[] = [[1, "bytes", "leaf"], [1, "bytes", "intermediate"], [1, "bytes", "root"]];
    same(encodeCaResponse({ cert_chain: ["leaf", "intermediate", "root"] }), chain);
    expect(decodeCaResponse(msg(chain)).cert_chain).toEqual(["leaf", "intermediate", "root"]);
  });
});

describe("delta xDS messages", () => {
  it("DeltaDiscoveryRequest: node 1 (id 1, metadata 3), type_url 2, subscribe 3, unsubscribe 4, initial versions 5, nonce 6, error 7", () => {
    const hand: Field[] = [
      [1, "bytes", [[1, "bytes", "ztunnel~10.0.0.1~zt-abc.istio-system~istio-system.svc.cluster.local"], [3, "bytes", structOf({ NODE_NAME: "node-a" })]]],
      [2, "bytes", ADDRESS_TYPE],
      [3, "bytes", "x"],
      [4, "bytes", "y"],
      [5, "bytes", [[1, "bytes", "uid-1"], [2, "bytes", "v7"]]],
      [6, "bytes", "n3"],
      [7, "bytes", [[1, "varint", 3], [2, "bytes", "bad address"]]],
    ];
    const obj = {
      node: { id: "ztunnel~10.0.0.1~zt-abc.istio-system~istio-system.svc.cluster.local", metadata: { NODE_NAME: "node-a" } },
      type_url: ADDRESS_TYPE,
      resource_names_subscribe: ["x"],
      resource_names_unsubscribe: ["y"],
      initial_resource_versions: { "uid-1": "v7" },
      response_nonce: "n3",
      error_detail: { code: 3, message: "bad address" },
    };
    same(encodeDeltaRequest(obj), hand);
    const back = decodeDeltaRequest(msg(hand));
    expect(back).toMatchObject({ ...obj, node: { id: obj.node.id, metadata: obj.node.metadata } });
  });

  it("DeltaDiscoveryResponse: system_version_info 1, resources 2 (version 1, resource 2 Any, name 3), type_url 4, nonce 5, removed 6", () => {
    const body = Buffer.from([1, 2, 3]);
    const hand: Field[] = [
      [1, "bytes", "sys"],
      [2, "bytes", [[1, "bytes", "v1"], [2, "bytes", [[1, "bytes", ADDRESS_TYPE], [2, "bytes", body]]], [3, "bytes", "uid-1"]]],
      [4, "bytes", ADDRESS_TYPE],
      [5, "bytes", "n1"],
      [6, "bytes", "gone"],
    ];
    const obj = { system_version_info: "sys", type_url: ADDRESS_TYPE, nonce: "n1", resources: [{ name: "uid-1", version: "v1", resource: { type_url: ADDRESS_TYPE, value: body } }], removed_resources: ["gone"] };
    same(encodeDeltaResponse(obj), hand);
    const back = decodeDeltaResponse(msg(hand));
    expect(back).toMatchObject({ ...obj, resources: [{ name: "uid-1", version: "v1", resource: { type_url: ADDRESS_TYPE } }] });
    expect(Buffer.from(back.resources[0]!.resource!.value)).toEqual(body);
  });
});

describe("istio.workload.Address", () => {
  const workload: WireWorkload = {
    uid: "Kubernetes//Pod/ns1/p1",
    name: "p1",
    namespace: "ns1",
    addresses: [Buffer.from([10, 0, 0, 7])],
    tunnel_protocol: "HBONE",
    trust_domain: "cluster.local",
    service_account: "sa1",
    node: "node-a",
    canonical_name: "app1",
    canonical_revision: "v1",
    workload_type: "POD",
    workload_name: "p1",
    services: { "ns1/svc.ns1.svc.cluster.local": { ports: [{ service_port: 80, target_port: 8080 }] } },
    authorization_policies: ["ns1/pol"],
    status: "UNHEALTHY",
    cluster_id: "Kubernetes",
    capacity: { value: 3 },
  };
  const hand: Field[] = [
    [1, "bytes", [
      [20, "bytes", "Kubernetes//Pod/ns1/p1"],
      [1, "bytes", "p1"],
      [2, "bytes", "ns1"],
      [3, "bytes", Buffer.from([10, 0, 0, 7])],
      [5, "varint", 1],
      [6, "bytes", "cluster.local"],
      [7, "bytes", "sa1"],
      [9, "bytes", "node-a"],
      [10, "bytes", "app1"],
      [11, "bytes", "v1"],
      [12, "varint", 2],
      [13, "bytes", "p1"],
      [22, "bytes", [[1, "bytes", "ns1/svc.ns1.svc.cluster.local"], [2, "bytes", [[1, "bytes", [[1, "varint", 80], [2, "varint", 8080]]]]]]],
      [16, "bytes", "ns1/pol"],
      [17, "varint", 1],
      [18, "bytes", "Kubernetes"],
      [27, "bytes", [[1, "varint", 3]]],
    ]],
  ];

  it("Workload: every field this agent uses at its number, inside oneof field 1", () => {
    same(encodeAddress({ workload }), hand);
    const back = decodeAddress(msg(hand));
    expect(back.workload).toMatchObject({ ...workload, addresses: [Buffer.from([10, 0, 0, 7])] });
  });

  it("Service (oneof field 2): name 1, namespace 2, hostname 3, addresses 4 (network 1, address 2), ports 5, subject_alt_names 6", () => {
    const svc: Field[] = [[2, "bytes", [
      [1, "bytes", "svc"],
      [2, "bytes", "ns1"],
      [3, "bytes", "svc.ns1.svc.cluster.local"],
      [4, "bytes", [[1, "bytes", "net1"], [2, "bytes", Buffer.from([10, 96, 0, 1])]]],
      [5, "bytes", [[1, "varint", 80], [2, "varint", 8080]]],
      [6, "bytes", "spiffe://cluster.local/ns/ns1/sa/sa1"],
    ]]];
    const obj = { name: "svc", namespace: "ns1", hostname: "svc.ns1.svc.cluster.local", addresses: [{ network: "net1", address: Buffer.from([10, 96, 0, 1]) }], ports: [{ service_port: 80, target_port: 8080 }], subject_alt_names: ["spiffe://cluster.local/ns/ns1/sa/sa1"] };
    same(encodeAddress({ service: obj }), svc);
    expect(decodeAddress(msg(svc)).service).toMatchObject(obj);
  });

  it("a waypoint (8) and a network gateway (19) are seen on decode", () => {
    const b = msg([[1, "bytes", [[20, "bytes", "u"], [8, "bytes", [[3, "varint", 15008]]], [19, "bytes", [[3, "varint", 15008]]]]]]);
    const w = decodeAddress(b).workload!;
    expect(w.waypoint).toMatchObject({ hbone_mtls_port: 15008 });
    expect(w.network_gateway).toMatchObject({ hbone_mtls_port: 15008 });
  });

  it("bytes that are not an Address throw", () => {
    expect(() => decodeAddress(Buffer.from([0x0a, 0x05, 0x01]))).toThrow();
  });
});

describe("istio.security.Authorization", () => {
  const obj: WireAuthorization = {
    name: "pol",
    namespace: "ns1",
    scope: "WORKLOAD_SELECTOR",
    action: "DENY",
    dry_run: true,
    groups: [{ rules: [{ matches: [{
      namespaces: [{ exact: "a" }],
      not_namespaces: [{ prefix: "b" }],
      principals: [{ suffix: "c" }],
      not_principals: [{ presence: {} }],
      source_ips: [{ address: Buffer.from([10, 0, 0, 0]), length: 8 }],
      not_source_ips: [{ address: Buffer.from([10, 1, 0, 0]), length: 16 }],
      destination_ips: [{ address: Buffer.from([10, 2, 0, 0]), length: 16 }],
      not_destination_ips: [{ address: Buffer.from([10, 3, 0, 0]), length: 16 }],
      destination_ports: [80, 443],
      not_destination_ports: [22],
      service_accounts: [{ namespace: "ns1", serviceAccount: "sa1" }],
      not_service_accounts: [{ namespace: "ns2", serviceAccount: "sa2" }],
    }] }] }],
  };
  const cidr = (a: number[], l: number): Field[] => [[1, "bytes", Buffer.from(a)], [2, "varint", l]];
  const hand: Field[] = [
    [1, "bytes", "pol"],
    [2, "bytes", "ns1"],
    [3, "varint", 2],
    [4, "varint", 1],
    [5, "bytes", [[1, "bytes", [[2, "bytes", [
      [1, "bytes", [[1, "bytes", "a"]]],
      [2, "bytes", [[2, "bytes", "b"]]],
      [3, "bytes", [[3, "bytes", "c"]]],
      [4, "bytes", [[4, "bytes", []]]],
      [5, "bytes", cidr([10, 0, 0, 0], 8)],
      [6, "bytes", cidr([10, 1, 0, 0], 16)],
      [7, "bytes", cidr([10, 2, 0, 0], 16)],
      [8, "bytes", cidr([10, 3, 0, 0], 16)],
      [9, "bytes", packed([80, 443])],
      [10, "bytes", packed([22])],
      [11, "bytes", [[1, "bytes", "ns1"], [2, "bytes", "sa1"]]],
      [12, "bytes", [[1, "bytes", "ns2"], [2, "bytes", "sa2"]]],
    ]]]]]],
    [6, "varint", 1],
  ];

  it("name 1, namespace 2, scope 3, action 4, groups 5 > rules 1 > matches 2 (fields 1 to 12), dry_run 6", () => {
    same(encodeAuthorization(obj), hand);
    expect(decodeAuthorization(msg(hand))).toMatchObject(obj);
  });

  it("unpacked repeated ports decode too (proto3 parsers must accept both)", () => {
    const b = msg([[1, "bytes", "p"], [5, "bytes", [[1, "bytes", [[2, "bytes", [[9, "varint", 80], [9, "varint", 81]]]]]]]]);
    expect(decodeAuthorization(b).groups[0]!.rules[0]!.matches[0]!.destination_ports).toEqual([80, 81]);
  });
});
