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

const LISTENERS: readonly DataListener[] = ["outbound", "socks5", "hbone", "plaintext"];

/** Int32 slots of the counters: the data path's total, then one per listener. */
export const FD_BUDGET_SLOTS = 1 + LISTENERS.length;

/**
 * Descriptor accounting for the data path, so that a flood of one kind cannot take the
 * descriptors everything else needs: each listener may hold its share, the data path as a
 * whole at most `capacity`, and what the process limit leaves beyond it stays in reserve
 * for the control ports, certificates, files and logs. Counting is two integer updates
 * per socket (at open and at 'close'); nothing is read from the system per connection.
 * The counters may live in shared memory (`counters`, FD_BUDGET_SLOTS Int32 slots): the
 * workers of one process then share one budget, as they share one descriptor limit.
 */
export function createFdBudget(o: FdBudgetOptions, counters: Int32Array = new Int32Array(FD_BUDGET_SLOTS)): FdBudget {
  const caps = Object.fromEntries(Object.entries(o.listenerShare).map(([k, share]) => [k, Math.max(1, Math.floor(o.capacity * share))])) as Record<DataListener, number>;
  const slots = Object.fromEntries(LISTENERS.map((l, k) => [l, 1 + k])) as Record<DataListener, number>;
  const slot = (l: DataListener): number => slots[l];
  const onClose = (): void => void Atomics.sub(counters, 0, 1);
  // One 'close' listener per listener kind, shared by its sockets ('close' comes once: no `once` wrapper).
  const onCloses = Object.fromEntries(
    LISTENERS.map((l) => [
      l,
      (): void => {
        Atomics.sub(counters, 0, 1);
        Atomics.sub(counters, slots[l], 1);
      },
    ]),
  ) as Record<DataListener, () => void>;
  return {
    admit(listener, socket, evicted = false) {
      const i = slot(listener);
      // Taken first, then checked: two workers admitting at once cannot both pass the cap.
      const total = Atomics.add(counters, 0, 1);
      const mine = Atomics.add(counters, i, 1);
      if (!evicted && (total >= o.capacity || mine >= caps[listener])) {
        Atomics.sub(counters, 0, 1);
        Atomics.sub(counters, i, 1);
        return false;
      }
      socket.on("close", onCloses[listener]);
      return true;
    },
    claim() {
      if (Atomics.add(counters, 0, 1) >= o.capacity) {
        Atomics.sub(counters, 0, 1);
        return false;
      }
      return true;
    },
    held(socket) {
      socket.on("close", onClose);
    },
    giveBack: onClose,
    stats: () => ({
      inUse: Atomics.load(counters, 0),
      capacity: o.capacity,
      listeners: Object.fromEntries(LISTENERS.map((l) => [l, Atomics.load(counters, slot(l))])) as Record<DataListener, number>,
    }),
  };
}

/** No limit (tests and tools that do not care). */
export const unlimitedFds: FdBudget = createFdBudget({ capacity: Number.MAX_SAFE_INTEGER, listenerShare: { outbound: 1, socks5: 1, hbone: 1, plaintext: 1 } });
