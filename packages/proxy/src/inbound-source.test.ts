import { describe, expect, it } from "vitest";
import { workload } from "../../state/src/test-support/workload.js";
import { verifiedSource } from "./inbound.js";

const sleep = workload("sleep", ["10.0.1.5"], { serviceAccount: "sleep" });
const peer = (sa: string): { id: string; trustDomain: string; namespace: string; serviceAccount: string } => ({
  id: `spiffe://cluster.local/ns/default/sa/${sa}`,
  trustDomain: "cluster.local",
  namespace: "default",
  serviceAccount: sa,
});

describe("the source address an HBONE peer may make the agent speak from", () => {
  it("is the forwarded address when it belongs to the identity the peer proved", () => {
    expect(verifiedSource(sleep, peer("sleep"), "10.0.1.5:40000")).toBe("10.0.1.5");
  });
  it("is nothing when the address belongs to another identity (a peer cannot borrow addresses)", () => {
    expect(verifiedSource(sleep, peer("echo"), "10.0.1.5:40000")).toBeUndefined();
  });
  it("is nothing for an unknown address, a missing header or an unauthenticated peer", () => {
    expect(verifiedSource(undefined, peer("sleep"), "10.9.9.9:1")).toBeUndefined();
    expect(verifiedSource(sleep, peer("sleep"), undefined)).toBeUndefined();
    expect(verifiedSource(sleep, undefined, "10.0.1.5:40000")).toBeUndefined();
  });
});
