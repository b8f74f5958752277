import http2, { type IncomingHttpHeaders } from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { peerIdentity, serverSocketOptions, type WorkloadCertificate } from "@zt/identity";

export interface SeenConnection {
  readonly protocol: string | null;
  readonly alpn: string | false | null;
  readonly clientIdentity: string | undefined;
  readonly streams: IncomingHttpHeaders[];
}

export interface FakePeer {
  readonly connections: SeenConnection[];
  close(): Promise<void>;
}

/**
 * A minimal HBONE server standing in for another node's agent: mTLS with `cert`,
 * HTTP/2, answers every CONNECT with 200 and echoes the stream. It records what the
 * client put on the wire so tests can check the outbound side's TLS and headers.
 */
export async function startFakePeer(ip: string, cert: WorkloadCertificate): Promise<FakePeer> {
  const connections: SeenConnection[] = [];
  const h2 = http2.createServer();
  h2.on("stream", (stream, headers) => {
    const sock = stream.session?.socket as (tls.TLSSocket & { seen?: SeenConnection }) | undefined;
    sock?.seen?.streams.push(headers);
    stream.on("error", () => {});
    stream.respond({ ":status": 200 });
    stream.pipe(stream);
  });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.once("close", () => sockets.delete(raw));
    raw.on("error", () => {});
    const s = new tls.TLSSocket(raw, serverSocketOptions(cert)) as tls.TLSSocket & { seen?: SeenConnection; secureConnecting: boolean };
    s.on("error", () => {});
    s.once("secure", () => {
      s.seen = { protocol: s.getProtocol(), alpn: s.alpnProtocol, clientIdentity: peerIdentity(s)?.id, streams: [] };
      connections.push(s.seen);
      s.secureConnecting = false;
      h2.emit("connection", s);
    });
  });
  await new Promise<void>((resolve) => server.listen(15008, ip, () => resolve()));
  return {
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
