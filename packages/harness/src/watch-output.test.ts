import { describe, expect, it } from "vitest";
import { outputWatcher } from "./watch-output.js";

const READY = "ztunnel ready to accept";

describe("outputWatcher", () => {
  it("sees the marker when later lines follow it in the same chunk", () => {
    // A batch of log lines: the ready line, then certificate lines (thousands of bytes).
    const chunk = `{"msg":"${READY}"}\n` + `{"msg":"certificate issued","identity":"spiffe://x"}\n`.repeat(40);
    expect(outputWatcher(READY)(chunk)).toBe(true);
  });

  it("sees a marker split over two chunks, and stays true", () => {
    const w = outputWatcher(READY);
    expect(w(`{"msg":"ztunnel re`)).toBe(false);
    expect(w(`ady to accept"}\n`)).toBe(true);
    expect(w("anything\n")).toBe(true);
  });

  it("does not see a marker that was never written", () => {
    const w = outputWatcher(READY);
    expect(w(`{"msg":"ztunnel ready`)).toBe(false);
    expect(w(` soon"}\n`)).toBe(false);
    expect(w("to accept\n")).toBe(false);
  });
});
