import http2, { type Http2Session, type Http2Stream } from "node:http2";
import type tls from "node:tls";
import { ProxyError, toProxyError } from "./errors.js";
import type { ReceiveBudget } from "./receive-budget.js";

/**
 * One HBONE connection's streams, and the rule for its end: when the connection ends for
 * any reason (FIN, RST, GOAWAY then close, keepalive timeout, TLS or protocol error),
 * every stream still open on it is destroyed with that reason, so that the TCP
 * connection on the other side of each stream gets an RST (never a FIN) and its one
 * access-log line says why. Used by both sides (the outbound pool, the inbound server).
 */
export interface HboneConnection {
  readonly session: Http2Session;
  readonly streams: Set<Http2Stream>;
  /** Last time a stream ended (or the connection opened): for idle release. */
  idleSince: number;
  /** Why it ended (or is ending): set once. */
  reason: ProxyError | undefined;
  track(stream: Http2Stream): void;
  /** End the connection now, resetting its streams with `reason`. */
  kill(reason: ProxyError): void;
  /** Close gracefully (GOAWAY; open streams finish), optionally sending `code`. */
  close(code?: number): void;
  /** The HTTP/2 layer gave up on the connection (a protocol error): report it once, then kill. */
  broken(err: ProxyError): void;
}

/**
 * Watch `socket` (the TLS socket under `session`) from before HTTP/2 takes it over: our
 * 'close' listener then runs before nghttp2's own teardown cancels the streams, so each
 * stream ends with the real reason. `peer` names the other side in messages.
 */
export function watchHboneConnection(
  session: Http2Session,
  socket: tls.TLSSocket,
  peer: string,
  /** The budget, and the stream window the session was opened with. */
  budget: { readonly of: ReceiveBudget; readonly window: number },
  /** The HTTP/2 layer ended the connection on its own (the peer broke the protocol): once, with why. */
  onBroken: (err: ProxyError) => void,
): HboneConnection {
  const accounted = budget.of.attach(session, budget.window);
  // One listener for all the connection's streams (the stream is `this`); 'close' comes once.
  const untrack = function (this: Http2Stream): void {
    c.streams.delete(this);
    if (c.streams.size === 0) c.idleSince = Date.now();
  };
  const c: HboneConnection = {
    session,
    streams: new Set(),
    idleSince: Date.now(),
    reason: undefined,
    track(stream) {
      c.streams.add(stream);
      accounted.track(stream);
      stream.on("close", untrack);
    },
    kill(reason) {
      c.reason ??= reason;
      // Every stream: nghttp2 destroys the completed ones too, and their lines should say why.
      endStreams(true);
      if (!session.destroyed) session.destroy();
      if (!socket.destroyed) socket.destroy();
    },
    close(code) {
      if (session.closed) return;
      if (code !== undefined) session.goaway(code);
      session.close();
    },
    broken(err) {
      if (c.reason) return c.kill(c.reason);
      c.reason = err;
      report(err);
      c.kill(err);
    },
  };
  let reported = false;
  const report = (err: ProxyError): void => {
    if (reported) return;
    reported = true;
    onBroken(err);
  };
  const endStreams = (all = false): void => {
    const reason = c.reason ?? new ProxyError("HBONE_CONNECTION_LOST", `the HBONE connection with ${peer} closed while the stream was open`);
    // A stream the peer completed (END_STREAM both ways) may still hold data for a slow
    // client: it is whole, so it drains and ends normally.
    for (const s of [...c.streams]) {
      if (s.destroyed || (!all && s.closed && s.rstCode === 0)) continue;
      // RST_STREAM(CANCEL) first, then the reason: a destroy with an error alone resets with
      // INTERNAL_ERROR, which on a session whose peer's GOAWAY refused queued streams makes
      // Node 20's nghttp2 spin (seen while agents were replaced under load).
      if (!s.closed) s.close(http2.constants.NGHTTP2_CANCEL);
      s.destroy(reason);
    }
  };
  // Node destroys the socket with the session's error (and emits the session's own 'error'
  // only after the socket closed): ours (a ProxyError, e.g. from the receive budget), the
  // HTTP/2 layer giving up on the peer's input, or the network or TLS failing.
  socket.once("error", (err: Error) => {
    if (!c.reason) {
      const why = toProxyError(err);
      if (err instanceof ProxyError) c.reason = err;
      else if (why.code === "HBONE_PROTOCOL_ERROR") c.reason = new ProxyError("HBONE_PROTOCOL_ERROR", `the HTTP/2 layer ended the HBONE connection with ${peer}: ${why.message}`, { cause: err });
      else c.reason = new ProxyError("HBONE_CONNECTION_LOST", `the HBONE connection with ${peer} failed: ${why.message}`, { cause: err });
      if (c.reason.code === "HBONE_PROTOCOL_ERROR") report(c.reason);
    }
    endStreams();
  });
  socket.once("end", () => {
    c.reason ??= new ProxyError("HBONE_CONNECTION_LOST", `${peer} closed the HBONE connection (TCP FIN) while the stream was open`);
    endStreams();
  });
  socket.once("close", () => endStreams());
  session.once("goaway", (code: number) => {
    if (code !== 0) c.reason ??= new ProxyError("HBONE_GOAWAY", `${peer} ended the HBONE connection with GOAWAY (HTTP/2 error ${code})`);
  });
  // Node destroys a session whose input nghttp2 refused as fatal (e.g. data past the
  // connection window: GOAWAY INTERNAL_ERROR, where FLOW_CONTROL_ERROR would be due); when
  // its socket was gone already, the socket's 'error' above did not see it.
  session.on("error", (err: Error) => {
    if (!c.reason) {
      c.reason = err instanceof ProxyError ? err : new ProxyError("HBONE_PROTOCOL_ERROR", `the HTTP/2 layer ended the HBONE connection with ${peer}: ${err.message} (${String((err as NodeJS.ErrnoException).code)})`, { cause: err });
      report(c.reason);
    }
    endStreams();
  });
  session.once("close", () => endStreams());
  return c;
}
