import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { Lab } from "./create-lab.js";

/**
 * Real-TCP probes run inside lab namespaces with `node -e` (the test process itself lives in the host
 * namespace and cannot reach lab addresses). Both print one JSON object per line on stdout.
 */

// argv: host port. Echoes every byte back; after the peer half-closes, reports and ends its side.
const ECHO_SERVER = `
const net = require("node:net"), crypto = require("node:crypto");
const [host, port] = process.argv.slice(1);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const srv = net.createServer({ allowHalfOpen: true }, (s) => {
  const h = crypto.createHash("sha256"); let bytes = 0;
  const conn = { remote: s.remoteAddress + ":" + s.remotePort, local: s.localAddress + ":" + s.localPort };
  s.on("data", (b) => { h.update(b); bytes += b.length; s.write(b); });
  s.on("end", () => { out({ event: "conn", ...conn, bytes, sha256: h.digest("hex") }); s.end(); });
  s.on("error", (e) => out({ event: "error", ...conn, message: e.message }));
});
srv.listen(Number(port), host, () => out({ event: "listening", host, port: Number(port) }));
process.on("SIGTERM", () => process.exit(0));
`;

// argv: host port localAddress|"" bytes. Sends random bytes, half-closes, reads the echo to the end.
const TCP_CLIENT = `
const net = require("node:net"), crypto = require("node:crypto");
const [host, port, localAddress, n] = process.argv.slice(1);
const payload = crypto.randomBytes(Number(n));
const opts = { host, port: Number(port), allowHalfOpen: true, ...(localAddress ? { localAddress } : {}) };
let ends = {};
const s = net.connect(opts, () => { ends = { local: s.localAddress + ":" + s.localPort, remote: s.remoteAddress + ":" + s.remotePort }; s.end(payload); });
const h = crypto.createHash("sha256"); let bytes = 0;
s.on("data", (b) => { h.update(b); bytes += b.length; });
s.on("end", () => {
  process.stdout.write(JSON.stringify({ ...ends, sent: payload.length, sentSha256: crypto.createHash("sha256").update(payload).digest("hex"), received: bytes, receivedSha256: h.digest("hex") }) + "\\n");
  s.destroy();
});
s.on("error", (e) => { process.stderr.write("tcp client: " + e.message + "\\n"); process.exit(1); });
setTimeout(() => { process.stderr.write("tcp client: timed out\\n"); process.exit(1); }, 10000).unref();
`;

export interface EchoConnection {
  remote: string;
  local: string;
  bytes: number;
  sha256: string;
}

export interface EchoServer {
  child: ChildProcess;
  /** Completed connections, in order. */
  connections: EchoConnection[];
  stop(): Promise<void>;
}

/** Start an echo server bound to ip:port inside `ns`; resolves once it is listening. */
export async function startEchoServer(lab: Lab, ns: string, ip: string, port: number): Promise<EchoServer> {
  const child = lab.spawn(ns, [process.execPath, "-e", ECHO_SERVER, ip, String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  const { stdout, stderr: errStream } = child;
  if (stdout === null || errStream === null) throw new Error("echo server: stdio not piped");
  const connections: EchoConnection[] = [];
  let stderr = "";
  errStream.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
  const lines = createInterface({ input: stdout });
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`echo server in ${ns} on ${ip}:${String(port)} exited (${String(code)}): ${stderr.trim()}`)));
    lines.on("line", (line) => {
      const msg = JSON.parse(line) as { event: string } & EchoConnection;
      if (msg.event === "listening") resolve();
      if (msg.event === "conn") connections.push({ remote: msg.remote, local: msg.local, bytes: msg.bytes, sha256: msg.sha256 });
    });
  });
  return {
    child,
    connections,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export interface RoundTrip {
  local: string;
  remote: string;
  sent: number;
  sentSha256: string;
  received: number;
  receivedSha256: string;
}

/** Connect from `ns` (optionally binding localAddress), send `bytes` random bytes, half-close, read the echo. */
export async function tcpRoundTrip(
  lab: Lab,
  ns: string,
  to: { host: string; port: number; localAddress?: string; bytes?: number },
): Promise<RoundTrip> {
  const argv = [process.execPath, "-e", TCP_CLIENT, to.host, String(to.port), to.localAddress ?? "", String(to.bytes ?? 65536)];
  const { stdout } = await lab.exec(ns, argv, { timeoutMs: 15_000 });
  return JSON.parse(stdout) as RoundTrip;
}
