import type { Http2Session, Http2Stream } from "node:http2";

export interface ReceiveBudgetOptions {
  /** Bytes one HBONE connection may hold unconsumed (the connection window: HTTP2_CONNECTION_WINDOW_SIZE). */
  readonly sessionBytes: number;
  /** Bytes all HBONE connections together may hold unconsumed; past it, connections holding data get no new window. */
  readonly totalBytes: number;
  /** How often held bytes are re-counted while some stream is stalled. */
  readonly tickMs?: number;
}

export interface SessionBudget {
  /** Account a stream of the session (its stalls and drains). */
  track(stream: Http2Stream): void;
}

export interface ReceiveBudget {
  /** Start accounting an HBONE connection, once its session is connected. */
  attach(session: Http2Session): SessionBudget;
  /** Bytes held unconsumed right now, and connections throttled. */
  stats(): { heldBytes: number; throttled: number };
  close(): void;
}

interface State {
  readonly session: Http2Session;
  readonly stalled: Set<Http2Stream>;
  /** The connection window last given to nghttp2. */
  window: number;
  held: number;
}

/** Window changes smaller than this are not worth a WINDOW_UPDATE. */
const STEP = 256 * 1024;

/**
 * Node's HTTP/2 gives connection-level window back as soon as data arrives, whether or not
 * anything consumed it; only stream windows wait for the reader. So a peer with many
 * streams towards destinations that do not read could make the agent hold
 * streams × stream window. This budget makes the connection window track consumption:
 * the bytes stalled streams hold (read from the peer, not yet taken by their destination)
 * are taken out of the connection's window (nghttp2 then withholds that much
 * WINDOW_UPDATE), and given back as they drain. Past the total budget, every connection
 * that holds data gets no new window at all until the total is back under it; flowing
 * connections, which hold nothing, are untouched.
 *
 * Stalls are seen from the streams' own 'pause'/'resume' (a back-pressure transition, not a
 * chunk); one shared timer re-counts while something is stalled. Nothing runs per chunk.
 */
export function createReceiveBudget(o: ReceiveBudgetOptions): ReceiveBudget {
  const tickMs = o.tickMs ?? 50;
  const active = new Set<State>();
  let total = 0;
  let timer: NodeJS.Timeout | undefined;

  const count = (st: State): void => {
    let held = 0;
    for (const s of st.stalled) held += s.readableLength;
    total += held - st.held;
    st.held = held;
  };
  const apply = (st: State): void => {
    if (st.session.destroyed || st.session.closed || st.session.connecting) return;
    const want = total > o.totalBytes && st.held > 0 ? 0 : Math.max(0, o.sessionBytes - st.held);
    if (want === st.window || (Math.abs(want - st.window) < STEP && want !== o.sessionBytes && want !== 0)) return;
    try {
      st.session.setLocalWindowSize(want);
      st.window = want;
    } catch {
      // The session is going away; nothing to throttle.
    }
  };
  const tick = (): void => {
    for (const st of active) count(st);
    for (const st of active) {
      apply(st);
      if (st.stalled.size === 0 && st.window === o.sessionBytes) active.delete(st);
    }
    if (active.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const changed = (st: State): void => {
    active.add(st);
    count(st);
    apply(st);
    if (!timer) {
      timer = setInterval(tick, tickMs);
      timer.unref();
    }
  };

  return {
    attach(session) {
      const st: State = { session, stalled: new Set(), window: o.sessionBytes, held: 0 };
      session.once("close", () => {
        st.stalled.clear();
        count(st);
        active.delete(st);
      });
      return {
        track(stream) {
          stream.on("pause", () => {
            st.stalled.add(stream);
            changed(st);
          });
          const unstall = (): void => {
            if (st.stalled.delete(stream)) changed(st);
          };
          stream.on("resume", unstall);
          stream.once("close", unstall);
        },
      };
    },
    stats() {
      let throttled = 0;
      for (const st of active) if (st.window < o.sessionBytes) throttled++;
      return { heldBytes: total, throttled };
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      active.clear();
    },
  };
}
