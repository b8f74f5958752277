/**
 * One relay of `bench/src/rtt-layers.ts`, in its own process as an agent is:
 *   node relay-layer.js <tcp|tls|h2c|h2> <a|b> <listen port> <connect port> <cert dir>
 * Side a accepts plain TCP on 127.0.0.1 and carries each connection to side b (plain TCP,
 * TLS 1.3, or one HTTP/2 CONNECT stream per connection on one session, with or without
 * TLS); side b dials 127.0.0.1:<connect port>. Prints "ready" once listening.
 */
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import path from "node:path";

const [mode, side, listenPort, connectPort, dir] = process.argv.slice(2) as [string, string, string, string, string];
const target = { host: "127.0.0.1", port: Number(connectPort) };
const creds = (name: string): { key: Buffer; cert: Buffer; ca: Buffer } => ({
  key: readFileSync(path.join(dir, `${name}.key`)),
  cert: readFileSync(path.join(dir, `${name}.crt`)),
  ca: readFileSync(path.join(dir, "ca.crt")),
});
const relay = (a: net.Socket | http2.Http2Stream, b: net.Socket | http2.Http2Stream): void => {
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
  a.pipe(b);
  b.pipe(a);
};
const dial = (): net.Socket => net.connect({ ...target, noDelay: true });
const tlsDial = (): tls.TLSSocket => {
  const s = tls.connect({ ...target, ...creds("client"), servername: "bench-server", minVersion: "TLSv1.3", ALPNProtocols: ["h2"] });
  s.setNoDelay(true);
  return s;
};
const ready = (server: net.Server | http2.Http2Server | http2.Http2SecureServer): void =>
  void server.listen(Number(listenPort), "127.0.0.1", () => process.stdout.write("ready\n"));

if (side === "a") {
  let session: http2.ClientHttp2Session | undefined;
  const h2 = (): http2.ClientHttp2Session =>
    (session ??= http2.connect(`${mode === "h2" ? "https" : "http"}://127.0.0.1:${connectPort}`, { createConnection: () => (mode === "h2" ? tlsDial() : dial()) }));
  ready(
    net.createServer({ noDelay: true }, (client) => {
      if (mode === "tcp") return relay(client, dial());
      if (mode === "tls") return relay(client, tlsDial());
      relay(client, h2().request({ ":method": "CONNECT", ":authority": `127.0.0.1:${connectPort}` }));
    }),
  );
} else if (mode === "tcp" || mode === "tls") {
  const onConn = (s: net.Socket): void => {
    s.setNoDelay(true);
    relay(s, dial());
  };
  ready(mode === "tcp" ? net.createServer(onConn) : tls.createServer({ ...creds("server"), requestCert: true, minVersion: "TLSv1.3" }, onConn));
} else {
  const server = mode === "h2" ? http2.createSecureServer({ ...creds("server"), requestCert: true, minVersion: "TLSv1.3" }) : http2.createServer();
  server.on("connection", (s: net.Socket) => s.setNoDelay(true));
  server.on("secureConnection", (s: net.Socket) => s.setNoDelay(true));
  server.on("stream", (stream) => {
    stream.respond({ ":status": 200 });
    relay(stream, dial());
  });
  ready(server);
}
