import { describe, expect, it } from "vitest";
import { createMeshStore } from "@zt/state";
import { workload } from "../../state/src/test-support/workload.js";
import { parseForwardedFor, verifiedSource } from "./inbound-source.js";

const sleep = workload("sleep", ["10.0.1.5"], { serviceAccount: "sleep" });
const store = createMeshStore({ workloads: [sleep], services: [], policies: [] });
const tcpPeer = { ip: "10.0.0.1", port: 51000 };
const peer = (sa: string): { id: string; trustDomain: string; namespace: string; serviceAccount: string } => ({
  id: `spiffe://cluster.local/ns/default/sa/${sa}`,
  trustDomain: "cluster.local",
  namespace: "default",
  serviceAccount: sa,
});

describe("the one verified source address of an HBONE stream", () => {
  it("is the forwarded address when it belongs to the identity the peer proved", () => {
    expect(verifiedSource(store, peer("sleep"), 'for="10.0.1.5:40000"', tcpPeer)).toMatchObject({ addr: "10.0.1.5:40000", ip: "10.0.1.5", forwarded: true, workload: sleep });
  });
  it("is the peer's TCP address when the forwarded address belongs to another identity (no borrowed addresses)", () => {
    expect(verifiedSource(store, peer("echo"), 'for="10.0.1.5:40000"', tcpPeer)).toEqual({ addr: "10.0.0.1:51000", ip: "10.0.0.1", forwarded: false, workload: undefined });
  });
  it("is the peer's TCP address for an unknown address, a missing or malformed header, or an unauthenticated peer", () => {
    for (const [id, h] of [[peer("sleep"), 'for="10.9.9.9:1"'], [peer("sleep"), undefined], [undefined, 'for="10.0.1.5:40000"'], [peer("sleep"), "for=garbage"]] as const) {
      expect(verifiedSource(store, id, h, tcpPeer)).toMatchObject({ addr: "10.0.0.1:51000", forwarded: false });
    }
  });
  it("parses for= with or without quotes, IPv6 in brackets", () => {
    expect(parseForwardedFor('for="[fd00::1]:8080";host=x')).toEqual({ ip: "fd00::1", port: 8080 });
    expect(parseForwardedFor("for=10.0.0.1:1")).toEqual({ ip: "10.0.0.1", port: 1 });
    expect(parseForwardedFor(["for=10.0.0.2:2", "for=10.0.0.3:3"])).toEqual({ ip: "10.0.0.2", port: 2 });
  });
});
