import net from "node:net";

export interface SocksConnectOptions {
  /** SOCKS5 server address. */
  readonly proxy: { readonly host: string; readonly port: number };
  /** Local address to bind: the source workload's IP. */
  readonly localAddress?: string;
  /** Local port to bind (so that the connection's access-log line can be found by its source address). */
  readonly localPort?: number;
  /** Target: an IP or a hostname, and a port. */
  readonly host: string;
  readonly port: number;
}

export class SocksRefused extends Error {
  readonly reply: number;
  constructor(reply: number) {
    super(`SOCKS5 server refused the CONNECT (reply ${reply})`);
    this.reply = reply;
  }
}

/**
 * A minimal SOCKS5 CONNECT client (no auth): resolves with the socket once the proxy said 0x00.
 * The socket is returned paused (nothing is lost before the caller listens): call `resume()` or `pipe()`.
 */
export function socksConnect(o: SocksConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: o.proxy.host, port: o.proxy.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}), ...(o.localPort ? { localPort: o.localPort } : {}), allowHalfOpen: true, noDelay: true });
    let buf: Buffer = Buffer.alloc(0);
    let stage = 0;
    const fail = (err: Error): void => {
      s.destroy();
      reject(err);
    };
    s.once("connect", () => {
      s.write(Buffer.from([5, 1, 0]));
    });
    s.on("error", fail);
    s.once("end", () => fail(new Error("SOCKS5 server closed during the handshake")));
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) return fail(new Error("SOCKS5 server refused no-auth"));
        buf = buf.subarray(2);
        stage = 1;
        s.write(request(o.host, o.port));
      }
      if (stage === 1 && buf.length >= 2) {
        if (buf[1] !== 0) return fail(new SocksRefused(buf[1]!));
        if (buf.length < 10) return;
        const rest = buf.subarray(10);
        s.removeListener("data", onData);
        s.removeAllListeners("end");
        s.removeListener("error", fail);
        s.pause();
        if (rest.length) s.unshift(rest);
        resolve(s);
      }
    };
    s.on("data", onData);
  });
}

function request(host: string, port: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  const v4 = net.isIPv4(host);
  if (v4) return Buffer.concat([Buffer.from([5, 1, 0, 1]), Buffer.from(host.split(".").map(Number)), p]);
  if (net.isIPv6(host)) {
    const full = expandV6(host);
    return Buffer.concat([Buffer.from([5, 1, 0, 4]), full, p]);
  }
  const name = Buffer.from(host, "latin1");
  return Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, p]);
}

function expandV6(ip: string): Buffer {
  const [head, tail] = ip.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g || "0", 16), i * 2));
  return b;
}
