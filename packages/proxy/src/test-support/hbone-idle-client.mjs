// Opens one HBONE (mTLS + h2) connection to <ip>:15008 with the given key/cert/roots, says "up", then idles.
import http2 from "node:http2";
import tls from "node:tls";

const [ip, creds] = process.argv.slice(2);
const { key, cert, ca } = JSON.parse(creds);
const socket = tls.connect({ host: ip, port: 15008, key, cert, ca, ALPNProtocols: ["h2"], minVersion: "TLSv1.3", checkServerIdentity: () => undefined });
socket.once("secureConnect", () => {
  const session = http2.connect(`https://${ip}:15008`, { createConnection: () => socket });
  session.on("error", () => {});
  session.once("connect", () => process.stdout.write("up\n"));
});
socket.on("error", () => {});
