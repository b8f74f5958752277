import type { Socket } from "node:net";
import { constants, type Http2Stream } from "node:http2";
import { setDefaultHighWaterMark } from "node:stream";

/**
 * What a spliced socket or stream may buffer before it pushes back. Node's default (16 KiB
 * on Node 20) makes every 64 KiB read from a socket, and every 16 KiB DATA frame, fill its
 * destination: the source pauses (read stop, a WINDOW_UPDATE held back) and resumes once
 * per chunk. At 128 KiB one connection runs about 15% faster for 13% less CPU per GiB in
 * the two agents (`bench/levers.sh`, bench/RESULTS.md). 1 MiB did better still (a third
 * faster), but a destination that stops reading holds this much beyond its HTTP/2 stream
 * window, which the receive budget does not count: 300 such streams of one identity made the
 * agent hold 700 MiB (test/attacks-memory.test.ts); at 128 KiB they hold under 40 MiB more.
 */
export const SPLICE_BUFFER_BYTES = 128 * 1024;

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

/** Told once, when both sides have ended: a function, or an object's `spliced` (no closure needed). */
export type SpliceDone = ((outcome: SpliceOutcome) => void) | { spliced(outcome: SpliceOutcome): void };

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
 * as long as it lives, idle or not. Here one listener per event and side, each a function
 * shared by every connection (the emitter is `this`, and finds its relay on itself), and
 * one small object per connection.
 */
export function splice(tcp: Socket, peer: Socket | Http2Stream, done: SpliceDone): void {
  const r = new Relay(tcp, peer, done);
  (tcp as Tagged)[RELAY] = r;
  (peer as Tagged)[RELAY] = r;
  tcp.on("error", onTcpError);
  peer.on("error", onPeerError);
  tcp.on("close", onTcpClose);
  peer.on("close", onPeerClose);
  // TCP -> peer; a full peer pauses the TCP side until it drains.
  tcp.on("data", onTcpData);
  peer.on("drain", onPeerDrain);
  onEnd(tcp, onTcpEnd);
  // Peer -> TCP.
  peer.on("data", onPeerData);
  tcp.on("drain", onTcpDrain);
  onEnd(peer, r.stream ? onStreamEnd : onPeerEnd);
  if (peer.writableNeedDrain) tcp.pause();
  else tcp.resume();
  if (tcp.writableNeedDrain) peer.pause();
  else peer.resume();
}

const RELAY = Symbol("relay");
type Tagged = { [RELAY]?: Relay };
const relayOf = (s: Socket | Http2Stream): Relay => (s as Tagged)[RELAY]!;

class Relay {
  open = 2;
  reset = false;
  error: Error | undefined;
  errorSide: "tcp" | "peer" | undefined;
  readonly stream: Http2Stream | undefined;

  constructor(
    readonly tcp: Socket,
    readonly peer: Socket | Http2Stream,
    readonly done: SpliceDone,
  ) {
    this.stream = isStream(peer) ? peer : undefined;
  }

  abortPeer(): void {
    const { peer, stream } = this;
    if (peer.destroyed) return;
    if (!stream) return void (peer as Socket).resetAndDestroy();
    // A stream the peer completed (END_STREAM both ways) that still holds data for us has no
    // RST left to send: it must still be destroyed, or it never ends and nothing is released.
    if (stream.closed) stream.destroy();
    else resetStream(stream);
  }

  abortTcp(): void {
    if (!this.tcp.destroyed) this.tcp.resetAndDestroy();
  }

  failed(err: Error, side: "tcp" | "peer"): void {
    this.reset = true;
    if (!this.error) [this.error, this.errorSide] = [err, side];
  }

  finish(): void {
    if (--this.open !== 0) return;
    const outcome: SpliceOutcome = { reset: this.reset, error: this.error, errorSide: this.errorSide, rstCode: this.stream?.rstCode || undefined };
    if (typeof this.done === "function") this.done(outcome);
    else this.done.spliced(outcome);
  }
}

function onTcpError(this: Socket, err: Error): void {
  const r = relayOf(this);
  r.failed(err, "tcp");
  r.abortPeer();
}
function onPeerError(this: Socket | Http2Stream, err: Error): void {
  const r = relayOf(this);
  r.failed(err, "peer");
  r.abortTcp();
}
function onTcpClose(this: Socket): void {
  const r = relayOf(this);
  if (!(this.readableEnded && this.writableFinished)) {
    r.reset = true;
    r.abortPeer();
  }
  r.finish();
}
function onPeerClose(this: Socket | Http2Stream): void {
  const r = relayOf(this);
  const graceful = r.stream ? r.stream.rstCode === undefined || r.stream.rstCode === constants.NGHTTP2_NO_ERROR : true;
  if (!graceful || !(this.readableEnded && this.writableFinished)) {
    r.reset = true;
    r.abortTcp();
  }
  r.finish();
}
function onTcpData(this: Socket, chunk: Buffer): void {
  if (!relayOf(this).peer.write(chunk)) this.pause();
}
function onPeerData(this: Socket | Http2Stream, chunk: Buffer): void {
  if (!relayOf(this).tcp.write(chunk)) this.pause();
}
function onPeerDrain(this: Socket | Http2Stream): void {
  relayOf(this).tcp.resume();
}
function onTcpDrain(this: Socket): void {
  relayOf(this).peer.resume();
}
function onTcpEnd(this: Socket | Http2Stream): void {
  relayOf(this).peer.end();
}
function onPeerEnd(this: Socket | Http2Stream): void {
  relayOf(this).tcp.end();
}
/**
 * A received RST_STREAM first ends the readable side, then reports the reset: wait one
 * turn so a reset becomes a TCP RST rather than a FIN followed by one.
 */
function onStreamEnd(this: Socket | Http2Stream): void {
  setImmediate(streamEnded, relayOf(this));
}
function streamEnded(r: Relay): void {
  const rst = r.stream!.rstCode;
  if (rst === undefined || rst === constants.NGHTTP2_NO_ERROR) r.tcp.end();
}

/** `fn` once `s` has ended its readable side (now, when it already has: as `pipe()` does). */
function onEnd(s: Socket | Http2Stream, fn: (this: Socket | Http2Stream) => void): void {
  if (s.readableEnded) process.nextTick(() => fn.call(s));
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
