import type { Http2Session, Http2Stream } from "node:http2";
import { ProxyError } from "./errors.js";

export interface ReceiveBudgetOptions {
  /** The stream window HBONE connections normally offer (HTTP2_STREAM_WINDOW_SIZE). */
  readonly streamWindow: number;
  /** Bytes one HBONE connection may hold unconsumed (HTTP2_CONNECTION_WINDOW_SIZE). */
  readonly sessionBytes: number;
  /** Bytes all HBONE connections together may hold unconsumed (HBONE_BUFFER_BUDGET). */
  readonly totalBytes: number;
  /** The smallest stream window offered under pressure; default 64 KiB (never 0: nothing freezes). */
  readonly minWindow?: number;
  /** How often held bytes are re-counted while some stream is not flowing; default 100 ms. */
  readonly tickMs?: number;
  /** A peer that does not acknowledge a window change in this long loses its connection; default 10 s. */
  readonly settingsTimeoutMs?: number;
}

export interface SessionBudget {
  /** Account a stream of the session: it holds what it received and nobody took yet. */
  track(stream: Http2Stream): void;
}

export interface ReceiveBudget {
  /** The stream window to offer a connection that starts now (small when the agent is over its total). */
  initialWindow(): number;
  /** Start accounting an HBONE connection (opened with `window` as its stream window). */
  attach(session: Http2Session, window: number): SessionBudget;
  /** Bytes held unconsumed right now, and connections whose stream window is lowered. */
  stats(): { heldBytes: number; throttled: number };
  close(): void;
}

interface State {
  readonly session: Http2Session;
  /** Streams open on the session. */
  readonly streams: Set<Http2Stream>;
  /** Streams not flowing (stalled by back-pressure, or not spliced yet): what they hold is counted. */
  readonly idle: Set<Http2Stream>;
  /** The stream window last sent (SETTINGS_INITIAL_WINDOW_SIZE). */
  window: number;
  held: number;
  /** A window change sent at this time is not acknowledged yet (0: none). */
  pendingSince: number;
}

/**
 * Node's HTTP/2 gives connection-level window back as soon as data arrives, whether or not
 * anything consumed it; only a stream's window waits for its reader. So a peer with many
 * streams towards destinations that do not read could make the agent hold
 * streams × stream window per connection, and withholding connection-level window does not
 * work either (Node sends no WINDOW_UPDATE when it is raised again: the connection freezes).
 *
 * So the budget acts on the stream window, which nghttp2 applies to open streams too and
 * raises with immediate effect (SETTINGS_INITIAL_WINDOW_SIZE): what a connection can be
 * made to hold is (open streams × stream window) plus what it holds now. A connection
 * whose streams hold data is offered a stream window of what is left of its budget
 * (`sessionBytes`) shared by its open streams; past the total (`totalBytes`), connections
 * holding more than their fair share get the smallest window, and new connections start
 * with it. Never 0: a connection whose data flows keeps moving. When what it holds drains,
 * the normal window comes back.
 *
 * What a stream holds is seen from its own flow: a stream counts from when it opens until
 * it flows ('resume'), and again whenever back-pressure pauses it ('pause') — transitions,
 * not chunks. One shared timer re-counts while anything is counted. Nothing runs per chunk.
 */
export function createReceiveBudget(o: ReceiveBudgetOptions): ReceiveBudget {
  const tickMs = o.tickMs ?? 100;
  const minWindow = Math.min(o.minWindow ?? 64 * 1024, o.streamWindow);
  const settingsTimeoutMs = o.settingsTimeoutMs ?? 10_000;
  const active = new Set<State>();
  const all = new Set<State>();
  let total = 0;
  let timer: NodeJS.Timeout | undefined;

  const recount = (): void => {
    total = 0;
    for (const st of active) {
      let held = 0;
      for (const s of st.idle) held += s.readableLength;
      st.held = held;
      total += held;
    }
  };
  const target = (st: State, fairShare: number): number => {
    if (total > o.totalBytes && st.held >= fairShare) return minWindow;
    if (st.held <= o.sessionBytes / 4 && total <= o.totalBytes / 2) return o.streamWindow;
    const left = Math.max(0, o.sessionBytes - st.held);
    return Math.min(o.streamWindow, Math.max(minWindow, Math.floor(left / Math.max(1, st.streams.size))));
  };
  const apply = (st: State, want: number, now: number): void => {
    if (st.session.destroyed || st.session.connecting) return;
    if (st.pendingSince) {
      // A peer that never acknowledges would keep the old, larger window (RFC 9113 §6.5.3).
      if (now - st.pendingSince > settingsTimeoutMs) {
        st.pendingSince = 0;
        st.session.destroy(new ProxyError("HBONE_PROTOCOL_ERROR", `the HBONE peer did not acknowledge a SETTINGS change (a smaller stream window) within ${settingsTimeoutMs} ms`));
      }
      return;
    }
    // Worth a SETTINGS frame: back to normal, or a change by at least a factor of two.
    if (want === st.window || (want !== o.streamWindow && want > st.window / 2 && want < st.window * 2)) return;
    try {
      st.pendingSince = now;
      st.session.settings({ initialWindowSize: want }, () => (st.pendingSince = 0));
      st.window = want;
    } catch {
      // The session is going away, or too many of our SETTINGS are unacknowledged.
      st.pendingSince = 0;
    }
  };
  const tick = (): void => {
    recount();
    let holding = 0;
    for (const st of active) if (st.held > 0) holding++;
    const fairShare = o.totalBytes / Math.max(1, holding);
    const now = Date.now();
    for (const st of active) {
      apply(st, target(st, fairShare), now);
      if (st.session.destroyed || (st.idle.size === 0 && st.window === o.streamWindow && !st.pendingSince)) {
        active.delete(st);
        total -= st.held;
        st.held = 0;
      }
    }
    if (active.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const wake = (st: State): void => {
    if (st.session.destroyed) return;
    active.add(st);
    if (!timer) {
      timer = setInterval(tick, tickMs);
      timer.unref();
    }
  };

  return {
    initialWindow: () => (total > o.totalBytes ? minWindow : o.streamWindow),
    attach(session, window) {
      const st: State = { session, streams: new Set(), idle: new Set(), window, held: 0, pendingSince: 0 };
      all.add(st);
      session.once("close", () => {
        all.delete(st);
        if (active.delete(st)) total -= st.held;
        st.held = 0;
        st.streams.clear();
        st.idle.clear();
      });
      if (window !== o.streamWindow) wake(st);
      // One set of listeners for all the session's streams (the stream is `this`), none per stream.
      const paused = function (this: Http2Stream): void {
        st.idle.add(this);
        wake(st);
      };
      const resumed = function (this: Http2Stream): void {
        st.idle.delete(this);
      };
      const closed = function (this: Http2Stream): void {
        st.streams.delete(this);
        st.idle.delete(this);
      };
      return {
        track(stream) {
          st.streams.add(stream);
          // Not flowing until something reads it: what arrives before the splice counts too.
          if (!stream.readableFlowing) st.idle.add(stream);
          stream.on("pause", paused);
          stream.on("resume", resumed);
          stream.on("close", closed);
          wake(st);
        },
      };
    },
    stats() {
      let throttled = 0;
      for (const st of all) if (st.window < o.streamWindow) throttled++;
      return { heldBytes: total, throttled };
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      active.clear();
      all.clear();
    },
  };
}
