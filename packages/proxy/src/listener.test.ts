import net from "node:net";
import { describe, expect, test } from "vitest";
import { Unproven } from "./listener.js";

describe("Unproven", () => {
  test("a socket that proved itself keeps no listener of it (it would hold one for the connection's life)", () => {
    const u = new Unproven();
    const s = new net.Socket();
    const before = s.listenerCount("close");
    u.add(s);
    expect(s.listenerCount("close")).toBe(before + 1);
    u.done(s);
    expect(s.listenerCount("close")).toBe(before);
    // Done, it is no longer the one evicted.
    expect(u.evictOldest()).toBe(false);
    s.destroy();
  });
});
