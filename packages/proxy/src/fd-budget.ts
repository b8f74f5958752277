import type net from "node:net";

/** The data-path listeners whose accepted sockets are counted. */
export type DataListener = "outbound" | "socks5" | "hbone" | "plaintext";

export interface FdBudgetOptions {
  /** Descriptors the data path may hold in all (the process limit minus what is kept in reserve). */
  readonly capacity: number;
  /** Share of `capacity` each listener's accepted sockets may hold (0..1). */
  readonly listenerShare: Readonly<Record<DataListener, number>>;
}

export interface FdBudget {
  /**
   * Count a socket `listener` just accepted; false (caller drops it) when the listener or the
   * data path is full. `evicted`: a socket of the same listener was just reset to make room
   * (its count drops when it closes), so admit this one over the cap meanwhile.
   */
  admit(listener: DataListener, socket: net.Socket, evicted?: boolean): boolean;
  /** Count an upstream socket about to be opened; false when the data path is full. Call `held(socket)` once it exists, or `giveBack()`. */
  claim(): boolean;
  held(socket: net.Socket): void;
  giveBack(): void;
  /** Descriptors held by the data path, of `capacity`, and per listener. */
  stats(): { inUse: number; capacity: number; listeners: Record<DataListener, number> };
}

/**
 * Descriptor accounting for the data path, so that a flood of one kind cannot take the
 * descriptors everything else needs: each listener may hold its share, the data path as a
 * whole at most `capacity`, and what the process limit leaves beyond it stays in reserve
 * for the control ports, certificates, files and logs. Counting is two integer updates
 * per socket (at open and at 'close'); nothing is read from the system per connection.
 */
export function createFdBudget(o: FdBudgetOptions): FdBudget {
  let inUse = 0;
  const counts: Record<DataListener, number> = { outbound: 0, socks5: 0, hbone: 0, plaintext: 0 };
  const caps = Object.fromEntries(Object.entries(o.listenerShare).map(([k, share]) => [k, Math.max(1, Math.floor(o.capacity * share))])) as Record<DataListener, number>;
  const onClose = (): void => {
    inUse--;
  };
  return {
    admit(listener, socket, evicted = false) {
      if (!evicted && (inUse >= o.capacity || counts[listener] >= caps[listener])) return false;
      inUse++;
      counts[listener]++;
      socket.once("close", () => {
        inUse--;
        counts[listener]--;
      });
      return true;
    },
    claim() {
      if (inUse >= o.capacity) return false;
      inUse++;
      return true;
    },
    held(socket) {
      socket.once("close", onClose);
    },
    giveBack: onClose,
    stats: () => ({ inUse, capacity: o.capacity, listeners: { ...counts } }),
  };
}

/** No limit (tests and tools that do not care). */
export const unlimitedFds: FdBudget = createFdBudget({ capacity: Number.MAX_SAFE_INTEGER, listenerShare: { outbound: 1, socks5: 1, hbone: 1, plaintext: 1 } });
