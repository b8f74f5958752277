import { describe, expect, it } from "vitest";
import { formatSpiffe, parseSpiffe } from "./spiffe.js";

describe("parseSpiffe", () => {
  it("parses a workload id", () => {
    expect(parseSpiffe("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")).toEqual({
      trustDomain: "cluster.local",
      namespace: "default",
      serviceAccount: "bookinfo-productpage",
    });
  });

  it.each([
    "",
    "http://cluster.local/ns/a/sa/b",
    "spiffe://cluster.local/ns/a/sa/b/",
    "spiffe://cluster.local/ns/a/sa/b/extra",
    "spiffe://cluster.local/ns/a",
    "spiffe://cluster.local/sa/b/ns/a",
    "spiffe://Cluster.Local/ns/a/sa/b",
    "spiffe://cluster.local:8080/ns/a/sa/b",
    "spiffe://user@cluster.local/ns/a/sa/b",
    "spiffe:///ns/a/sa/b",
    "spiffe://cluster.local/ns//sa/b",
    "spiffe://cluster.local/ns/../sa/b",
    "spiffe://cluster.local/ns/a/sa/b?x=1",
    "spiffe://cluster.local/ns/a/sa/b#f",
    "spiffe://cluster.local/ns/a b/sa/b",
  ])("rejects %j", (uri) => {
    expect(parseSpiffe(uri)).toBeUndefined();
  });
});

describe("formatSpiffe", () => {
  it("round-trips", () => {
    const parts = { trustDomain: "td.example", namespace: "ns1", serviceAccount: "sa_1" };
    expect(formatSpiffe(parts)).toBe("spiffe://td.example/ns/ns1/sa/sa_1");
    expect(parseSpiffe(formatSpiffe(parts))).toEqual(parts);
  });

  it("refuses parts that would not parse", () => {
    expect(() => formatSpiffe({ trustDomain: "td", namespace: "a/b", serviceAccount: "x" })).toThrowError(
      expect.objectContaining({ code: "SPIFFE_ID_INVALID" }),
    );
  });
});
