import { describe, expect, it } from "vitest";
import { ADDRESS_TYPE } from "@zt/istio";
import { NamesOverLimit, TypeState } from "./xds-session.js";

describe("TypeState (one type of one stream)", () => {
  it('"*" again on a wildcard subscription changes nothing (no full-table diff)', () => {
    const t = new TypeState({ type_url: ADDRESS_TYPE, resource_names_subscribe: [] });
    t.full = false; // as after its first diff
    t.resubscribe({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["*"] });
    expect(t.full).toBe(false);
    // From explicit names, "*" still turns it into a wildcard and diffs the whole table.
    const e = new TypeState({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["a"] });
    e.full = false;
    e.resubscribe({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["*"] });
    expect(e).toMatchObject({ wildcard: true, full: true });
  });

  it("explicit names stop at the limit given, counted across requests; names already held do not count twice", () => {
    expect(() => new TypeState({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["a", "b", "c"] }, 2)).toThrow(NamesOverLimit);
    const t = new TypeState({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["a", "a", "b"] }, 2);
    t.resubscribe({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["a", "b"] }, 2);
    expect(() => t.resubscribe({ type_url: ADDRESS_TYPE, resource_names_subscribe: ["c"] }, 2)).toThrow(NamesOverLimit);
    expect(t.names.size).toBe(2);
  });
});
