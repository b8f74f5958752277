/**
 * `/debug/status`: the agent's health in one JSON document, what the admin page polls —
 * readiness and what it still waits for, the discovery source, the certificates and when
 * they expire and rotate, the capture rules, and what the data path holds (connections per
 * worker, the HBONE pool per peer).
 */
import type { CertManager } from "@zt/identity";
import type { MeshStore } from "@zt/state";
import type { DataPathStats } from "./data-path.js";
import type { WorkerStats } from "./workers/workers.js";

export interface StatusDeps {
  readonly nodeName: string;
  readonly version: string;
  readonly store: MeshStore;
  readonly certs: CertManager;
  /** What readiness still waits for (empty: ready). */
  readonly pending: () => Promise<string[]>;
  readonly draining: () => boolean;
  /** The discovery source: its dump (as in /config_dump `source`) and what it still waits for. */
  readonly source: { dump(): object; pending?(): string[] };
  /** The capture rules (as in /config_dump `capture`). */
  readonly capture: () => unknown;
  /** What each worker holds. */
  readonly dataPath: () => Promise<WorkerStats[]>;
}

export function createStatus(d: StatusDeps): () => Promise<unknown> {
  return async () => {
    const [pending, each] = await Promise.all([d.pending(), d.dataPath()]);
    const peers: Record<string, { connections: number; streams: number }> = {};
    for (const w of each) {
      for (const [peer, p] of Object.entries(w.poolPeers)) {
        const sum = (peers[peer] ??= { connections: 0, streams: 0 });
        sum.connections += p.connections;
        sum.streams += p.streams;
      }
    }
    const total = (f: (w: DataPathStats) => number): number => each.reduce((n, w) => n + f(w), 0);
    return {
      node: d.nodeName,
      version: d.version,
      time: new Date().toISOString(),
      ready: pending.length === 0,
      pending,
      draining: d.draining(),
      source: { ...d.source.dump(), pending: d.source.pending?.() ?? [] },
      certificates: d.certs.dump().map((c) => ({
        identity: c.identity,
        status: c.status,
        notBefore: c.certChain[0]?.validFrom ?? null,
        expiresAt: c.certChain[0]?.expirationTime ?? null,
        rotatesAt: c.rotatesAt ?? null,
        error: c.lastError ? `${c.lastError.code}: ${c.lastError.message}` : null,
      })),
      capture: d.capture(),
      mesh: d.store.counts(),
      connections: { live: total((w) => w.live), accepted: total((w) => w.open), workers: each.map((w) => ({ worker: w.worker, live: w.live, accepted: w.open })) },
      pool: { connections: total((w) => w.pool.connections), streams: total((w) => w.pool.streams), peers },
      inbound: { connections: total((w) => w.inbound.connections), streams: total((w) => w.inbound.streams) },
    };
  };
}
