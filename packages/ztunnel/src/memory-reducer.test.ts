import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { createMemoryReducer, type MemoryReducer } from "./memory-reducer.js";

// The reducer with a counting gc, on fake timers (one sample a second, a look every 10 s);
// the live count is driven by the test. A round of collections is two gc() calls.
let reducer: MemoryReducer | undefined;
beforeEach(() => vi.useFakeTimers());
afterEach(() => {
  reducer?.close();
  vi.useRealTimers();
});

function start(initial = 0): { set(n: number): void; gcs(): number; seconds(n: number): void } {
  let live = initial;
  let gcs = 0;
  reducer = createMemoryReducer(() => live, { gc: () => gcs++ });
  return { set: (n) => (live = n), gcs: () => gcs, seconds: (n) => vi.advanceTimersByTime(n * 1000) };
}

test("a burst of new connections that settles gets one round of full collections", () => {
  const r = start();
  for (let n = 500; n <= 4000; n += 500) {
    r.set(n);
    r.seconds(1);
  }
  expect(r.gcs()).toBe(0); // still growing
  r.seconds(1);
  expect(r.gcs()).toBe(2);
  r.seconds(5); // held still afterwards: nothing more
  expect(r.gcs()).toBe(2);
});

test("a flat count (steady churn), and growth below 256 connections, never trigger it", () => {
  const r = start(3000);
  for (let i = 0; i < 8; i++) {
    r.set(3000 + (i % 2) * 20);
    r.seconds(1);
  }
  r.set(3200);
  r.seconds(3);
  expect(r.gcs()).toBe(0);
});

test("the drop after a peak still gives memory back at the next look", () => {
  const r = start(3000);
  r.seconds(9);
  r.set(100);
  r.seconds(1);
  expect(r.gcs()).toBe(2);
});
