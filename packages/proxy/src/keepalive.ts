import type { Http2Session } from "node:http2";

export interface KeepaliveOptions {
  /** PING a connection this often (contract: 10 s). */
  readonly intervalMs: number;
  /** Give up on a peer whose PING answer is this late (contract: 20 s). */
  readonly timeoutMs: number;
  /**
   * Called once for a session whose peer did not answer in time; it is no longer watched.
   * `stalled`: our PING never even left (it is still in nghttp2's queue): the peer stopped
   * reading, or nghttp2 itself stopped serving the connection after a protocol error (it
   * sends GOAWAY, e.g. COMPRESSION_ERROR for a header field over 64 KB, and then neither
   * reads nor writes, and Node reports nothing).
   */
  readonly onTimeout: (session: Http2Session, stalled: boolean) => void;
  /** Something threw while checking a session (it is dropped from the watch; the timer goes on). */
  readonly onFault?: (where: string, err: unknown) => void;
}

export interface Keepalive {
  watch(session: Http2Session): void;
  close(): void;
}

interface State {
  sentAt: number;
  lastAt: number;
}

/**
 * HTTP/2 PING keepalive for many sessions on one coarse shared timer (no timer per
 * connection): a peer that vanished without a FIN is found and its session destroyed.
 */
export function createKeepalive(o: KeepaliveOptions): Keepalive {
  const sessions = new Map<Http2Session, State>();
  const tickMs = Math.max(50, Math.min(1000, Math.floor(o.intervalMs / 2)));
  let timer: NodeJS.Timeout | undefined;

  const check = (s: Http2Session, st: State, now: number): void => {
    // Node cancels PINGs on a closed session (GOAWAY sent or received): its open streams are
    // left to the peer's drain, and a peer host that vanishes meanwhile to TCP keepalive
    // (set on every HBONE socket).
    if (s.closed || s.destroyed) {
      sessions.delete(s);
    } else if (st.sentAt && now - st.sentAt > o.timeoutMs) {
      sessions.delete(s);
      o.onTimeout(s, (s.state.outboundQueueSize ?? 0) > 0);
    } else if (!st.sentAt && now - st.lastAt >= o.intervalMs) {
      st.sentAt = now;
      const sent = s.ping((err) => {
        st.sentAt = 0;
        st.lastAt = Date.now();
        if (err && sessions.delete(s)) o.onTimeout(s, false);
      });
      if (!sent) st.sentAt = 0;
    }
  };

  const tick = (): void => {
    const now = Date.now();
    for (const [s, st] of sessions) {
      try {
        check(s, st, now);
      } catch (err) {
        sessions.delete(s);
        o.onFault?.("keepalive", err);
      }
    }
    if (sessions.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    watch(session) {
      sessions.set(session, { sentAt: 0, lastAt: Date.now() });
      session.once("close", () => sessions.delete(session));
      if (!timer) {
        timer = setInterval(tick, tickMs);
        timer.unref();
      }
    },
    close() {
      sessions.clear();
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
