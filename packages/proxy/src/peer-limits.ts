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

/**
 * One identity (one compromised workload, one misbehaving node) cannot hold more than its
 * share of the node: at most `maxConnectionsPerIdentity` HBONE connections and
 * `maxStreamsPerIdentity` open streams (each stream is an upstream socket, with its
 * descriptor and kernel buffers).
 */
export function createPeerLimits(options: PeerLimitsOptions): PeerLimits {
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
      if (u.connections >= options.maxConnectionsPerIdentity) return false;
      u.connections++;
      return true;
    },
    closeConnection(id) {
      const u = get(id);
      u.connections = Math.max(0, u.connections - 1);
      forget(id, u);
    },
    openStream(id) {
      const u = get(id);
      if (u.streams >= options.maxStreamsPerIdentity) return false;
      u.streams++;
      return true;
    },
    closeStream(id) {
      const u = get(id);
      u.streams = Math.max(0, u.streams - 1);
      forget(id, u);
    },
    countReset: (id) => void get(id).resets++,
    countRefused: (id) => void get(id).refused++,
    usage: () => peers,
  };
}
