import { describe, expect, test } from "vitest";
import type { CertManager } from "@zt/identity";
import { createMeshStore, EMPTY_SNAPSHOT } from "@zt/state";
import { createStatus } from "./status.js";
import type { WorkerStats } from "./workers/workers.js";

// /debug/status from what the workers answered: worker 0 stuck (left out), worker 1 holding
// connections and two pool connections to one peer, worker 2 one more to it.
const stats = (worker: number, live: number, peers: WorkerStats["poolPeers"]): WorkerStats => ({
  worker,
  live,
  open: live,
  pool: { connections: Object.values(peers).reduce((n, p) => n + p.connections, 0), streams: 0, keys: 1 },
  poolPeers: peers,
  inbound: { connections: 0, streams: 0 },
  receiveBudget: {},
  peers: {},
});

describe("/debug/status", () => {
  test("workers keep their own numbers when one did not answer; the pool is summed per peer", async () => {
    const status = createStatus({
      nodeName: "node-a",
      version: "test",
      store: createMeshStore(EMPTY_SNAPSHOT),
      certs: { dump: () => [] } as unknown as CertManager,
      pending: async () => ["certificate spiffe://cluster.local/ns/default/sa/sleep"],
      draining: () => false,
      source: { dump: () => ({ kind: "file" }) },
      capture: () => ({ mode: "none" }),
      dataPath: async () => [stats(1, 3, { "10.0.0.2:15008": { connections: 2, streams: 5 } }), stats(2, 1, { "10.0.0.2:15008": { connections: 1, streams: 1 } })],
    });
    const s = (await status()) as { ready: boolean; connections: { live: number; workers: { worker: number; live: number }[] }; pool: { peers: Record<string, unknown> } };
    expect(s.ready).toBe(false);
    expect(s.connections.live).toBe(4);
    expect(s.connections.workers.map((w) => [w.worker, w.live])).toEqual([[1, 3], [2, 1]]);
    expect(s.pool.peers).toEqual({ "10.0.0.2:15008": { connections: 3, streams: 6 } });
  });
});
