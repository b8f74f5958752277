/**
 * A raw HTTP/2 frame writer and reader for attack and fault tests: unlike node:http2,
 * it sends exactly the frames it is told to (floods, resets, zero windows, cached bad
 * headers, silence instead of PING acks). RFC 9113 framing, RFC 7541 HPACK without
 * Huffman coding (plain literals, indexing when asked).
 */
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export const Frame = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
export const Setting = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;
export const ErrorCode = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9, CONNECT_ERROR: 0xa, ENHANCE_YOUR_CALM: 0xb } as const;

export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

export function settingsFrame(values: Record<number, number> = {}, ack = false): Buffer {
  const entries = Object.entries(values);
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, v], i) => {
    p.writeUInt16BE(Number(id), i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(Frame.SETTINGS, ack ? Flag.ACK : 0, 0, p);
}

export function windowUpdate(stream: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment & 0x7fffffff);
  return frame(Frame.WINDOW_UPDATE, 0, stream, p);
}

export function rstStream(stream: number, code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(Frame.RST_STREAM, 0, stream, p);
}

export function goaway(lastStream: number, code: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStream & 0x7fffffff);
  p.writeUInt32BE(code, 4);
  return frame(Frame.GOAWAY, 0, 0, p);
}

export function ping(opaque: Buffer = Buffer.alloc(8), ack = false): Buffer {
  return frame(Frame.PING, ack ? Flag.ACK : 0, 0, opaque);
}

// --- HPACK (RFC 7541), no Huffman ---

function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, "latin1");
  return Buffer.concat([hpackInt(b.length, 7, 0), b]);
}

/** One header field representation. */
export type HeaderField =
  | { readonly kind: "literal"; readonly name: string; readonly value: string }
  | { readonly kind: "indexing"; readonly name: string; readonly value: string }
  | { readonly kind: "indexed"; readonly index: number };

/** Encode fields: `literal` = never indexed, `indexing` = added to the peer's dynamic table, `indexed` = by table index (dynamic entries start at 62). */
export function hpack(fields: readonly (HeaderField | readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    const field: HeaderField = Array.isArray(f) ? { kind: "literal", name: f[0], value: f[1] } : (f as HeaderField);
    if (field.kind === "indexed") parts.push(hpackInt(field.index, 7, 0x80));
    else parts.push(Buffer.from([field.kind === "indexing" ? 0x40 : 0x10]), hpackString(field.name), hpackString(field.value));
  }
  return Buffer.concat(parts);
}

export function headersFrame(stream: number, block: Buffer, endStream = false, endHeaders = true): Buffer {
  return frame(Frame.HEADERS, (endStream ? Flag.END_STREAM : 0) | (endHeaders ? Flag.END_HEADERS : 0), stream, block);
}

export function connectHeaders(authority: string, extra: readonly (readonly [string, string])[] = []): Buffer {
  return hpack([[":method", "CONNECT"], [":authority", authority], ...extra]);
}

// --- a connection ---

/**
 * Frames in and out over one socket (TLS or plain). Reading stops when `paused` (the
 * kernel's TCP window then closes on the peer). `autoAck` answers SETTINGS and PING.
 */
export class RawConnection extends EventEmitter {
  readonly frames: RawFrame[] = [];
  autoAck = true;
  private buf = Buffer.alloc(0);
  private prefaceLeft: number;

  constructor(
    readonly socket: Duplex,
    role: "client" | "server",
  ) {
    super();
    this.prefaceLeft = role === "server" ? PREFACE.length : 0;
    socket.on("data", (c: Buffer) => this.onData(c));
    socket.on("error", (e) => this.emit("socket-error", e));
    socket.once("close", () => this.emit("close"));
  }

  send(...chunks: Buffer[]): boolean {
    return this.socket.write(Buffer.concat(chunks));
  }

  /** Stop reading the socket (no more frames, no acks). */
  pause(): void {
    this.socket.pause();
  }

  /** Wait for the first frame matching `test` (already received or future). */
  waitFor(test: (f: RawFrame) => boolean, timeoutMs = 10_000): Promise<RawFrame> {
    const hit = this.frames.find(test);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("frame", on);
        reject(new Error("timed out waiting for a frame"));
      }, timeoutMs);
      const on = (f: RawFrame): void => {
        if (!test(f)) return;
        clearTimeout(timer);
        this.off("frame", on);
        resolve(f);
      };
      this.on("frame", on);
    });
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, this.buf.length);
      this.buf = this.buf.subarray(n);
      this.prefaceLeft -= n;
    }
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: RawFrame = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      this.frames.push(f);
      if (this.autoAck && f.type === Frame.SETTINGS && !(f.flags & Flag.ACK)) this.send(settingsFrame({}, true));
      if (this.autoAck && f.type === Frame.PING && !(f.flags & Flag.ACK)) this.send(ping(f.payload, true));
      this.emit("frame", f);
    }
  }
}

/** True when a response HEADERS block is `:status: 200` (nghttp2 sends it as static-table index 8). Other statuses are Huffman-coded literals: read them with node:http2. */
export function isOk(f: RawFrame): boolean {
  return f.type === Frame.HEADERS && f.payload[0] === 0x88;
}

export function errorCodeOf(f: RawFrame): number {
  return f.type === Frame.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0);
}
