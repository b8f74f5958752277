/**
 * Preloaded into every thread of the agents by `idle.ts` (NODE_OPTIONS="--import …/probe.js",
 * which worker threads inherit), only for the idle-memory measure: when the runner writes a
 * request "<id> <what>" to $ZT_PROBE_DIR/req, each thread answers once in
 * $ZT_PROBE_DIR/<pid>-<thread>-<id>.json with its V8 heap figures; with "gc" it collects
 * first, with "snap" it also writes a heap snapshot next to it. Looked at every 250 ms on an
 * unref'd timer: nothing runs per connection.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import v8 from "node:v8";
import vm from "node:vm";
import { isMainThread, threadId } from "node:worker_threads";

const dir = process.env["ZT_PROBE_DIR"];
// ZT_PROBE_V8_FLAGS: V8 flags set in the main thread before the agent starts its workers (for
// trying out flags NODE_OPTIONS does not take, such as --optimize-for-size).
if (isMainThread && process.env["ZT_PROBE_V8_FLAGS"]) v8.setFlagsFromString(process.env["ZT_PROBE_V8_FLAGS"]);
if (dir) {
  let seen = 0;
  const gc = (): void => {
    v8.setFlagsFromString("--expose-gc");
    (vm.runInNewContext("gc") as () => void)();
  };
  const look = (): void => {
    const req = `${dir}/req`;
    if (!existsSync(req)) return;
    const [idText = "", ...words] = readFileSync(req, "utf8").trim().split(" ");
    const what = words.join(" ");
    const id = Number(idText);
    if (!(id > seen)) return;
    seen = id;
    if (what.includes("gc")) {
      gc();
      gc();
    }
    const name = `${dir}/${process.pid}-${threadId}-${id}`;
    const mem = process.memoryUsage();
    const heap = v8.getHeapStatistics();
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]));
    writeFileSync(`${name}.json.tmp`, JSON.stringify({ pid: process.pid, threadId, isMainThread, heapUsed: heap.used_heap_size, heapTotal: heap.total_heap_size, physical: heap.total_physical_size, malloced: heap.malloced_memory, external: mem.external, arrayBuffers: mem.arrayBuffers, spaces }));
    if (what.includes("snap")) v8.writeHeapSnapshot(`${name}.heapsnapshot`);
    // Renamed when complete, so the runner never reads half a file.
    renameSync(`${name}.json.tmp`, `${name}.json`);
  };
  setInterval(() => {
    try {
      look();
    } catch (err) {
      process.stderr.write(`probe (thread ${threadId}, main ${isMainThread}): ${String(err)}\n`);
    }
  }, 250).unref();
}
