import net from "node:net";
import tls from "node:tls";
import { clientConnectOptions, serverSocketOptions, type WorkloadCertificate } from "@zt/identity";
import { Flag, Frame, goaway, headersFrame, RawConnection, settingsFrame, windowUpdate } from "./h2-raw.js";

/** How the fake destination agent misbehaves once a CONNECT stream is open. */
export type Fault =
  | "fin" // close the TCP connection with a FIN (TLS close_notify + FIN), no GOAWAY
  | "goaway-fin" // GOAWAY(NO_ERROR, last stream) then FIN
  | "silent" // keep the connection but never answer again (no PING acks, no reads)
  | "garbage"; // write bytes that are not TLS records under the TLS layer

export interface FaultyPeer {
  /** Inject the fault on every connection held now. */
  fault(f: Fault): void;
  /** Resolves when a CONNECT stream has been answered 200 and echoed its first bytes. */
  readonly streamOpen: Promise<void>;
  close(): Promise<void>;
}

/**
 * A fake destination agent for fault tests, written on the raw frame layer: mTLS with
 * `cert`, answers every CONNECT with 200 and echoes DATA, until `fault()` makes it
 * misbehave the way a dying or stuck agent does.
 */
export async function startFaultyPeer(ip: string, cert: WorkloadCertificate): Promise<FaultyPeer> {
  const held: { raw: net.Socket; tls: tls.TLSSocket; conn: RawConnection }[] = [];
  let opened!: () => void;
  const streamOpen = new Promise<void>((r) => (opened = r));
  const server = net.createServer((raw) => {
    raw.on("error", () => {});
    const s = new tls.TLSSocket(raw, serverSocketOptions(cert));
    s.on("error", () => {});
    const conn = new RawConnection(s, "server");
    held.push({ raw, tls: s, conn });
    s.once("secure", () => s.write(settingsFrame({ [4]: 4 << 20 })));
    conn.on("frame", (f: { type: number; flags: number; stream: number; payload: Buffer }) => {
      if (f.type === Frame.HEADERS) conn.send(windowUpdate(0, 16 << 20), headersFrame(f.stream, Buffer.from([0x88])));
      if (f.type === Frame.DATA && f.payload.length > 0) {
        conn.send(Buffer.concat([dataHeader(f.payload.length, f.stream, f.flags & Flag.END_STREAM), f.payload]), windowUpdate(0, f.payload.length), windowUpdate(f.stream, f.payload.length));
        opened();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(15008, ip, () => resolve()));
  return {
    streamOpen,
    fault(f) {
      for (const h of held) {
        if (f === "fin") h.tls.end();
        else if (f === "goaway-fin") {
          const last = Math.max(0, ...h.conn.frames.filter((x) => x.type === Frame.HEADERS).map((x) => x.stream));
          h.conn.send(goaway(last, 0));
          h.tls.end();
        } else if (f === "silent") {
          h.conn.autoAck = false;
          h.conn.removeAllListeners("frame");
          h.tls.pause();
          h.raw.pause();
        } else h.raw.write(Buffer.alloc(64, 0x17));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const h of held) h.raw.destroy();
        server.close(() => resolve());
      }),
  };
}

function dataHeader(len: number, stream: number, flags: number): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(len, 0, 3);
  h[3] = Frame.DATA;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return h;
}

/** An mTLS (TLS 1.3, ALPN h2) raw HTTP/2 client connection to an HBONE listener, preface and SETTINGS sent. */
export function rawHboneClient(ip: string, port: number, cert: WorkloadCertificate, settings: Record<number, number> = {}): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...clientConnectOptions(cert, []), checkServerIdentity: () => undefined, host: ip, port });
    s.once("secureConnect", () => {
      s.removeListener("error", reject);
      const conn = new RawConnection(s, "client");
      conn.send(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), settingsFrame(settings));
      resolve(conn);
    });
    s.once("error", reject);
  });
}
