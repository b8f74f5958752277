import type { Socket } from "node:net";
import { constants, type Http2Stream } from "node:http2";

export interface SpliceOutcome {
  /** True when either side ended abruptly (RST, error, destroy) rather than by FIN / END_STREAM. */
  readonly reset: boolean;
  readonly error?: Error | undefined;
  /** Which side reported `error`. */
  readonly errorSide?: "tcp" | "peer" | undefined;
  /** The HTTP/2 stream's RST_STREAM code, when it ended with one other than NO_ERROR. */
  readonly rstCode?: number | undefined;
}

/**
 * Copy bytes both ways between a TCP socket and its peer (another socket or an
 * HTTP/2 CONNECT stream) until both directions have ended.
 *
 * - Back-pressure: a reader whose destination is full is paused until it drains.
 * - Half-close: a FIN on one side ends that direction only (`end()` / END_STREAM);
 *   the sockets must be created with `allowHalfOpen: true`.
 * - Reset: an abrupt end on one side resets the other (TCP RST / RST_STREAM CONNECT_ERROR).
 * Byte counts are read from the TCP socket's own counters afterwards: nothing per chunk.
 *
 * Not `pipe()`: two pipes hold about 20 closures per connection (and `once` wrappers) for
 * as long as it lives, idle or not; this relay holds one listener per event and side, all
 * in one closure context.
 */
export function splice(tcp: Socket, peer: Socket | Http2Stream, done: (outcome: SpliceOutcome) => void): void {
  let open = 2;
  let reset = false;
  let error: Error | undefined;
  let errorSide: "tcp" | "peer" | undefined;
  const stream = isStream(peer) ? peer : undefined;

  const abortPeer = (): void => {
    if (peer.destroyed) return;
    if (!stream) return void (peer as Socket).resetAndDestroy();
    // A stream the peer completed (END_STREAM both ways) that still holds data for us has no
    // RST left to send: it must still be destroyed, or it never ends and nothing is released.
    if (stream.closed) stream.destroy();
    else resetStream(stream);
  };
  const abortTcp = (): void => {
    if (!tcp.destroyed) tcp.resetAndDestroy();
  };
  const finish = (): void => {
    if (--open === 0) done({ reset, error, errorSide, rstCode: stream?.rstCode || undefined });
  };

  tcp.on("error", (err) => {
    reset = true;
    if (!error) [error, errorSide] = [err, "tcp"];
    abortPeer();
  });
  peer.on("error", (err: Error) => {
    reset = true;
    if (!error) [error, errorSide] = [err, "peer"];
    abortTcp();
  });
  tcp.on("close", () => {
    if (!(tcp.readableEnded && tcp.writableFinished)) {
      reset = true;
      abortPeer();
    }
    finish();
  });
  peer.on("close", () => {
    const graceful = stream ? stream.rstCode === undefined || stream.rstCode === constants.NGHTTP2_NO_ERROR : true;
    if (!graceful || !(peer.readableEnded && peer.writableFinished)) {
      reset = true;
      abortTcp();
    }
    finish();
  });

  // TCP -> peer; a full peer pauses the TCP side until it drains.
  tcp.on("data", (chunk: Buffer) => {
    if (!peer.write(chunk)) tcp.pause();
  });
  peer.on("drain", () => tcp.resume());
  onEnd(tcp, () => peer.end());
  // Peer -> TCP.
  peer.on("data", (chunk: Buffer) => {
    if (!tcp.write(chunk)) peer.pause();
  });
  tcp.on("drain", () => peer.resume());
  if (stream) {
    // A received RST_STREAM first ends the readable side, then reports the reset:
    // wait one turn so a reset becomes a TCP RST rather than a FIN followed by one.
    onEnd(stream, () =>
      setImmediate(() => {
        if (stream.rstCode === undefined || stream.rstCode === constants.NGHTTP2_NO_ERROR) tcp.end();
      }),
    );
  } else {
    onEnd(peer, () => tcp.end());
  }
  if (peer.writableNeedDrain) tcp.pause();
  else tcp.resume();
  if (tcp.writableNeedDrain) peer.pause();
  else peer.resume();
}

/** `fn` once `s` has ended its readable side (now, when it already has: as `pipe()` does). */
function onEnd(s: Socket | Http2Stream, fn: () => void): void {
  if (s.readableEnded) process.nextTick(fn);
  else s.on("end", fn);
}

/**
 * RST_STREAM(CONNECT_ERROR) and nothing else. `Http2Stream.close(code)` first ends the
 * writable side, which puts an END_STREAM on the wire ahead of the reset, and the peer
 * would turn that into a FIN before the RST. Marking the writable side as ending (what
 * `end()` itself does first) makes `close()` skip that step.
 */
export function resetStream(stream: Http2Stream): void {
  if (stream.closed || stream.destroyed) return;
  const ws = (stream as unknown as { _writableState?: { ending: boolean } })._writableState;
  if (ws) ws.ending = true;
  stream.close(constants.NGHTTP2_CONNECT_ERROR);
}

function isStream(s: Socket | Http2Stream): s is Http2Stream {
  return "rstCode" in s;
}
