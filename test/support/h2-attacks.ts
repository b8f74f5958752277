/**
 * Hostile HTTP/2 clients on the raw frame layer, each holding a valid mesh certificate.
 * They obey the agent's flow control (a violation would just end their connection);
 * what makes them hostile is what they ask the agent to hold.
 */
import type { WorkloadCertificate } from "@zt/identity";
import { rawHboneClient } from "./faulty-peer.js";
import { connectHeaders, Frame, headersFrame, isOk, rstStream, Setting, windowUpdate, type RawConnection, type RawFrame } from "./h2-raw.js";

const MAX_FRAME = 16_384;

/** Sends DATA on open streams as fast as the agent's windows (connection and stream) allow. */
export class FlowPusher {
  private conn = 65_535;
  private initial = 65_535;
  /** The stream window the agent offers now (its last SETTINGS_INITIAL_WINDOW_SIZE). */
  get initialWindow(): number {
    return this.initial;
  }
  private readonly windows = new Map<number, number>();
  private readonly chunk = Buffer.alloc(MAX_FRAME, 0x61);
  sent = 0;
  stopped = false;

  constructor(readonly c: RawConnection) {
    c.on("frame", (f: RawFrame) => {
      if (f.type === Frame.SETTINGS && !(f.flags & 1)) {
        for (let i = 0; i + 6 <= f.payload.length; i += 6) {
          if (f.payload.readUInt16BE(i) === Setting.INITIAL_WINDOW_SIZE) {
            const v = f.payload.readUInt32BE(i + 2);
            for (const [id, w] of this.windows) this.windows.set(id, w + v - this.initial);
            this.initial = v;
          }
        }
      } else if (f.type === Frame.WINDOW_UPDATE) {
        const inc = f.payload.readUInt32BE(0) & 0x7fffffff;
        if (f.stream === 0) this.conn += inc;
        else if (this.windows.has(f.stream)) this.windows.set(f.stream, this.windows.get(f.stream)! + inc);
      } else if (f.type === Frame.RST_STREAM) this.windows.delete(f.stream);
      this.pump();
    });
    c.socket.on("drain", () => this.pump());
  }

  open(stream: number): void {
    this.windows.set(stream, this.initial);
    this.pump();
  }

  private pump(): void {
    if (this.stopped || this.c.socket.writableNeedDrain) return;
    const batch: Buffer[] = [];
    let bytes = 0;
    let progressed = true;
    while (progressed && bytes < 1 << 20) {
      progressed = false;
      for (const [id, w] of this.windows) {
        const n = Math.min(MAX_FRAME, w, this.conn);
        if (n <= 0) continue;
        this.windows.set(id, w - n);
        this.conn -= n;
        this.sent += n;
        bytes += n;
        progressed = true;
        batch.push(frameHead(n, id), this.chunk.subarray(0, n));
      }
    }
    if (batch.length > 0 && this.c.send(...batch)) setImmediate(() => this.pump());
  }
}

function frameHead(len: number, stream: number): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(len, 0, 3);
  h[3] = Frame.DATA;
  h.writeUInt32BE(stream, 5);
  return h;
}

export interface FloodOptions {
  readonly target: string;
  /** "ip:port" the streams CONNECT to (a workload of the agent's node). */
  readonly authority: string;
  readonly cert: WorkloadCertificate;
  readonly streams: number;
  /** Advertise a zero stream window: the agent may send nothing back. */
  readonly zeroWindow?: boolean;
  /** Push DATA right after the HEADERS, before the agent answered (and before it dialled). */
  readonly pushBeforeAnswer?: boolean;
}

export interface Flood {
  readonly conn: RawConnection;
  readonly pusher: FlowPusher;
  /** Streams answered 200. */
  readonly opened: () => number;
  /** DATA bytes the agent sent back (acknowledged with WINDOW_UPDATE unless zeroWindow). */
  readonly received: () => number;
  close(): void;
}

/** One connection with `streams` CONNECT streams, each pushing data as fast as the agent lets it. */
export async function flood(o: FloodOptions): Promise<Flood> {
  const conn = await rawHboneClient(o.target, 15008, o.cert, o.zeroWindow ? { [Setting.INITIAL_WINDOW_SIZE]: 0 } : {});
  const pusher = new FlowPusher(conn);
  let ok = 0;
  let received = 0;
  conn.on("frame", (f: RawFrame) => {
    if (f.type === Frame.HEADERS && isOk(f)) {
      ok++;
      if (!o.pushBeforeAnswer) pusher.open(f.stream);
    } else if (f.type === Frame.DATA && f.payload.length > 0) {
      received += f.payload.length;
      if (!o.zeroWindow) conn.send(windowUpdate(0, f.payload.length), windowUpdate(f.stream, f.payload.length));
    }
  });
  for (let i = 0; i < o.streams; i++) {
    conn.send(headersFrame(2 * i + 1, connectHeaders(o.authority)));
    if (o.pushBeforeAnswer) pusher.open(2 * i + 1);
  }
  return { conn, pusher, opened: () => ok, received: () => received, close: () => conn.socket.destroy() };
}

/** Open and immediately reset `n` CONNECT streams per round (CVE-2023-44487 shape). */
export async function rapidReset(target: string, authority: string, cert: WorkloadCertificate, n: number): Promise<RawConnection> {
  const conn = await rawHboneClient(target, 15008, cert);
  const block = connectHeaders(authority);
  const frames: Buffer[] = [];
  for (let i = 0; i < n; i++) frames.push(headersFrame(2 * i + 1, block), rstStream(2 * i + 1, 8));
  conn.send(...frames);
  return conn;
}
