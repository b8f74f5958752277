import type { Socket } from "node:net";
import { constants, type Http2Stream } from "node:http2";
import { setDefaultHighWaterMark } from "node:stream";

/**
 * What a spliced socket or stream may buffer before it pushes back. Node's default (16 KiB
 * on Node 20) makes every 64 KiB read from a socket, and every 16 KiB DATA frame, fill its
 * destination: the source pauses (read stop, a WINDOW_UPDATE held back) and resumes once
 * per chunk. At 256 KiB one connection costs the two agents about a third less CPU per GiB
 * (`bench/levers.sh`, bench/RESULTS.md). A stalled destination holds this much more than
 * its HTTP/2 stream window.
 */
export const SPLICE_BUFFER_BYTES = 256 * 1024;

/**
 * Make SPLICE_BUFFER_BYTES the high-water mark of every byte stream this thread creates from
 * now on (Node offers no option for the streams of an HTTP/2 session). A data-path worker
 * calls it once, before it opens a socket.
 */
export function useSpliceBuffers(): void {
  setDefaultHighWaterMark(false, SPLICE_BUFFER_BYTES);
}

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
 * - Back-pressure: `pipe` pauses a reader whose destination is full.
 * - Half-close: a FIN on one side ends that direction only (`end()` / END_STREAM);
 *   the sockets must be created with `allowHalfOpen: true`.
 * - Reset: an abrupt end on one side resets the other (TCP RST / RST_STREAM CONNECT_ERROR).
 * Byte counts are read from the TCP socket's own counters afterwards: nothing per chunk.
 */
export function splice(tcp: Socket, peer: Socket | Http2Stream, done: (outcome: SpliceOutcome) => void): void {
  let open = 2;
  let reset = false;
  let error: Error | undefined;
  let errorSide: "tcp" | "peer" | undefined;

  const abortPeer = (): void => {
    if (peer.destroyed) return;
    if (!isStream(peer)) return void peer.resetAndDestroy();
    // A stream the peer completed (END_STREAM both ways) that still holds data for us has no
    // RST left to send: it must still be destroyed, or it never ends and nothing is released.
    if (peer.closed) peer.destroy();
    else resetStream(peer);
  };
  const abortTcp = (): void => {
    if (!tcp.destroyed) tcp.resetAndDestroy();
  };
  const finish = (): void => {
    if (--open === 0) done({ reset, error, errorSide, rstCode: isStream(peer) && peer.rstCode ? peer.rstCode : undefined });
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
    const graceful = isStream(peer)
      ? peer.rstCode === undefined || peer.rstCode === constants.NGHTTP2_NO_ERROR
      : true;
    if (!graceful || !(peer.readableEnded && peer.writableFinished)) {
      reset = true;
      abortTcp();
    }
    finish();
  });

  tcp.pipe(peer);
  if (isStream(peer)) {
    // A received RST_STREAM first ends the readable side, then reports the reset:
    // wait one turn so a reset becomes a TCP RST rather than a FIN followed by one.
    peer.pipe(tcp, { end: false });
    peer.once("end", () =>
      setImmediate(() => {
        if (peer.rstCode === undefined || peer.rstCode === constants.NGHTTP2_NO_ERROR) tcp.end();
      }),
    );
  } else {
    peer.pipe(tcp);
  }
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
