/** Per peer identity caps on the HBONE inbound side, and what each identity holds. */
export interface PeerLimitsOptions {
  readonly maxConnectionsPerIdentity: number;
  readonly maxStreamsPerIdentity: number;
}

export interface PeerUsage {
  connections: number;
  streams: number;
  /** Streams the peer reset before they were served, and streams refused, since the agent started. */
  resets: number;
  refused: number;
}

export interface PeerLimits {
  /** Take a connection slot for `identity`; false when it holds its cap already. */
  openConnection(identity: string): boolean;
  closeConnection(identity: string): void;
  /** Take a stream slot; false at the cap. */
  openStream(identity: string): boolean;
  closeStream(identity: string): void;
  countReset(identity: string): void;
  countRefused(identity: string): void;
  /** Identities holding anything, or with resets/refusals, for /config_dump and metrics. */
  usage(): ReadonlyMap<string, Readonly<PeerUsage>>;
  readonly options: PeerLimitsOptions;
}

/** Int32 slots of a shared table of per-identity counts (SHARED_PEER_ENTRIES identities). */
export const SHARED_PEER_ENTRIES = 8192;
export const SHARED_PEER_SLOTS = SHARED_PEER_ENTRIES * 3;
const MAX_PROBES = 64;

/**
 * The counts that decide the caps, shared by the data-path workers of one process (one
 * table in shared memory: [hash, connections, streams] per identity, by open addressing;
 * an entry, once taken by an identity's hash, stays its). Two identities whose hashes
 * collide share their caps: the error is towards refusing. An identity that finds no entry
 * (the table full around its hash) is capped by this worker's own counts.
 */
class SharedCounts {
  /** Each identity's entry, once found: streams open and close by the thousand, the hash and probe once. */
  private readonly found = new Map<string, number>();
  constructor(private readonly t: Int32Array) {}
  entry(id: string): number | undefined {
    const known = this.found.get(id);
    if (known !== undefined) return known;
    const i = this.probe(id);
    if (i !== undefined) {
      // Bounded by the mesh's identities (each one a certificate of our CA); a guard all the same.
      if (this.found.size >= SHARED_PEER_ENTRIES) this.found.clear();
      this.found.set(id, i);
    }
    return i;
  }
  private probe(id: string): number | undefined {
    const h = fnv1a(id) | 1;
    const n = this.t.length / 3;
    for (let p = 0, i = (h >>> 0) % n; p < MAX_PROBES; p++, i = (i + 1) % n) {
      const at = Atomics.load(this.t, i * 3);
      if (at === h) return i;
      if (at === 0 && (Atomics.compareExchange(this.t, i * 3, 0, h) === 0 || Atomics.load(this.t, i * 3) === h)) return i;
    }
    return undefined;
  }
  /** Takes one of field (1 connections, 2 streams) under `max`; false at the cap. */
  take(i: number, field: 1 | 2, max: number): boolean {
    if (Atomics.add(this.t, i * 3 + field, 1) < max) return true;
    Atomics.sub(this.t, i * 3 + field, 1);
    return false;
  }
  give(i: number, field: 1 | 2): void {
    Atomics.sub(this.t, i * 3 + field, 1);
  }
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * One identity (one compromised workload, one misbehaving node) cannot hold more than its
 * share of the node: at most `maxConnectionsPerIdentity` HBONE connections and
 * `maxStreamsPerIdentity` open streams (each stream is an upstream socket, with its
 * descriptor and kernel buffers). With `shared` (SHARED_PEER_SLOTS Int32 slots of shared
 * memory) the caps hold across every worker of the process; `usage()` is this one's.
 */
export function createPeerLimits(options: PeerLimitsOptions, shared?: Int32Array): PeerLimits {
  const table = shared ? new SharedCounts(shared) : undefined;
  const peers = new Map<string, PeerUsage>();
  const get = (id: string): PeerUsage => {
    let u = peers.get(id);
    if (!u) peers.set(id, (u = { connections: 0, streams: 0, resets: 0, refused: 0 }));
    return u;
  };
  const forget = (id: string, u: PeerUsage): void => {
    // Counters of identities that hold nothing are kept (they are metrics); bounded by the mesh's identities.
    if (u.connections === 0 && u.streams === 0 && u.resets === 0 && u.refused === 0) peers.delete(id);
  };
  return {
    options,
    openConnection(id) {
      const u = get(id);
      const i = table?.entry(id);
      if (i !== undefined) {
        if (!table!.take(i, 1, options.maxConnectionsPerIdentity)) return false;
      } else if (u.connections >= options.maxConnectionsPerIdentity) return false;
      u.connections++;
      return true;
    },
    closeConnection(id) {
      const u = get(id);
      if (u.connections > 0) {
        const i = table?.entry(id);
        if (i !== undefined) table!.give(i, 1);
      }
      u.connections = Math.max(0, u.connections - 1);
      forget(id, u);
    },
    openStream(id) {
      const u = get(id);
      const i = table?.entry(id);
      if (i !== undefined) {
        if (!table!.take(i, 2, options.maxStreamsPerIdentity)) return false;
      } else if (u.streams >= options.maxStreamsPerIdentity) return false;
      u.streams++;
      return true;
    },
    closeStream(id) {
      const u = get(id);
      if (u.streams > 0) {
        const i = table?.entry(id);
        if (i !== undefined) table!.give(i, 2);
      }
      u.streams = Math.max(0, u.streams - 1);
      forget(id, u);
    },
    countReset: (id) => void get(id).resets++,
    countRefused: (id) => void get(id).refused++,
    usage: () => peers,
  };
}
