import v8 from "node:v8";
import vm from "node:vm";
import { releaseFreedMemory } from "@zt/sockopt";

export interface MemoryReducer {
  close(): void;
}

/** How often the load is looked at. */
const CHECK_MS = 10_000;
/** How often the live count is sampled (the peak, and a burst of new connections settling). */
const SAMPLE_MS = 1000;
/** New connections since memory was last given back that make a settled burst worth a collection. */
const SETTLED_GROWTH = 256;

export interface MemoryReducerOptions {
  /** A full collection (default: V8's `gc`, exposed at run time). */
  readonly gc?: (() => void) | undefined;
  readonly checkMs?: number;
  readonly sampleMs?: number;
}

/**
 * Gives memory back once a burst of connections is over. V8 collects garbage only when
 * the program allocates; an agent that goes quiet after a burst (a flood, a load test)
 * would otherwise keep the heap, and the buffers the heap still references, at their
 * peak for as long as it stays quiet. One coarse timer compares the live connections with
 * the most seen since the last look; when they fell below a quarter of it (and the peak was
 * worth it), full collections run, then the C allocator's free pages go back to the kernel
 * (malloc_trim, through the socket-option addon); once more at the next look, for what the
 * closing connections still held the first time.
 *
 * The same once a burst of new connections has settled (they stay open, idle): setting each
 * up leaves garbage that survived the young generation, and V8 lets the old generation grow
 * to several times what was live before it collects again, which an idle agent may never
 * reach. So when the live count grew by SETTLED_GROWTH since memory was last given back and
 * then held still for a sample, the collections run once. Nothing runs per connection; a
 * steady churn at a flat count never triggers it.
 */
export function createMemoryReducer(live: () => number, o: MemoryReducerOptions = {}): MemoryReducer {
  const gc = "gc" in o ? o.gc : exposeGc();
  let peak = 0;
  let again = false;
  const reduce = (): void => {
    // Two in a row: the second one finds the young generation empty and lets V8 shrink it.
    gc?.();
    gc?.();
    // The buffers just collected went back to the C allocator; give its free pages to the kernel.
    setImmediate(releaseFreedMemory);
  };
  const timer = setInterval(() => {
    const now = live();
    if (gc && peak >= 64 && now < peak / 4) {
      reduce();
      // Connections that closed just before this look may not be garbage yet: look once more next time.
      again = true;
      peak = now;
    } else if (again && now < 64) {
      reduce();
      again = false;
    } else {
      again = false;
      peak = Math.max(peak, now);
    }
  }, o.checkMs ?? CHECK_MS);
  timer.unref();
  // The peak between two looks matters too: sample it more often, cheaply; and see a burst settle.
  let settled = live();
  let last = settled;
  const sampler = setInterval(() => {
    const now = live();
    peak = Math.max(peak, now);
    if (now < settled) settled = now;
    if (gc && now - settled >= SETTLED_GROWTH && Math.abs(now - last) <= now / 64) {
      reduce();
      settled = now;
    }
    last = now;
  }, o.sampleMs ?? SAMPLE_MS);
  sampler.unref();
  return {
    close() {
      clearInterval(timer);
      clearInterval(sampler);
    },
  };
}

/** `gc()` without starting node with --expose-gc (the flag is set before the function is first looked up). */
function exposeGc(): (() => void) | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}
