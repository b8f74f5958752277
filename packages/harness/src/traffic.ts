import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { Lab } from "@zt/lab";

/**
 * Traffic that outlives one probe: run inside a pod's namespace with `node -e` (like @zt/lab's
 * probes), reporting one JSON line per event on stdout, driven through stdin.
 */

// argv: JSON {targets: [{host, port}], concurrency, bytes}. Each worker opens one connection
// after the other: random bytes, half-close, the echo read to its end and hashed. "stop" on
// stdin lets every worker finish its connection, then reports {event: "done"}.
const LOAD = `
const net = require("node:net"), crypto = require("node:crypto"), readline = require("node:readline");
const cfg = JSON.parse(process.argv[1]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
let stopping = false;
readline.createInterface({ input: process.stdin }).on("line", (l) => { if (l === "stop") stopping = true; });
const one = (t) => new Promise((resolve) => {
  const payload = crypto.randomBytes(cfg.bytes);
  const sha256 = crypto.createHash("sha256").update(payload).digest("hex");
  const h = crypto.createHash("sha256");
  let received = 0, local = "", error;
  const s = net.connect({ host: t.host, port: t.port, allowHalfOpen: true });
  const timer = setTimeout(() => { error = "timeout"; s.destroy(); }, 10000);
  s.on("connect", () => { local = s.localAddress + ":" + s.localPort; s.end(payload); });
  s.on("data", (b) => { h.update(b); received += b.length; });
  s.on("end", () => s.end());
  s.on("error", (e) => { error ??= e.code || e.message; });
  s.on("close", () => {
    clearTimeout(timer);
    const ok = !error && received === payload.length && h.digest("hex") === sha256;
    out({ event: "conn", target: t.host + ":" + t.port, local, ok, sent: payload.length, received, sha256, ...(error ? { error } : {}) });
    resolve();
  });
});
Promise.all(cfg.targets.flatMap((t) => Array.from({ length: cfg.concurrency }, async () => { while (!stopping) await one(t); })))
  .then(() => { out({ event: "done" }); process.exit(0); });
out({ event: "started" });
`;

// argv: host port. One long-lived connection: "send <n>" writes n random bytes and reports
// once they came back intact; "end" half-closes and reports the clean end. Any other end
// (reset, error) is reported as it happens.
const HOLD = `
const net = require("node:net"), crypto = require("node:crypto"), readline = require("node:readline");
const [host, port] = process.argv.slice(1);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
let expected = Buffer.alloc(0), got = Buffer.alloc(0), total = 0, ended = false, error;
s.on("connect", () => out({ event: "open", local: s.localAddress + ":" + s.localPort }));
s.on("data", (b) => {
  got = Buffer.concat([got, b]);
  if (got.length >= expected.length && expected.length > 0) {
    const ok = got.subarray(0, expected.length).equals(expected);
    total += expected.length; got = got.subarray(expected.length); expected = Buffer.alloc(0);
    out({ event: "echoed", ok, total });
  }
});
s.on("end", () => { ended = true; s.end(); });
s.on("error", (e) => { error ??= e.code || e.message; });
s.on("close", () => { out({ event: "closed", clean: ended && !error, ...(error ? { error } : {}) }); process.exit(0); });
readline.createInterface({ input: process.stdin }).on("line", (l) => {
  const [cmd, n] = l.split(" ");
  if (cmd === "send") { expected = crypto.randomBytes(Number(n)); s.write(expected); }
  if (cmd === "end") s.end();
});
`;

export interface LoadConnection {
  readonly target: string;
  /** The client's own address, "ip:port" (empty when it never connected). */
  readonly local: string;
  readonly ok: boolean;
  readonly sent: number;
  readonly received: number;
  readonly sha256: string;
  readonly error?: string;
}

export interface Load {
  /** Connections completed so far, in order. */
  readonly connections: LoadConnection[];
  /** Let every worker finish its connection; resolves with all of them. */
  stop(): Promise<LoadConnection[]>;
}

/** Keep opening connections from `ns` to every target (`concurrency` at a time each) until stop(). */
export async function startLoad(lab: Lab, ns: string, targets: readonly { host: string; port: number }[], opts: { concurrency?: number; bytes?: number } = {}): Promise<Load> {
  const cfg = { targets, concurrency: opts.concurrency ?? 2, bytes: opts.bytes ?? 16 * 1024 };
  const child = lab.spawn(ns, [process.execPath, "-e", LOAD, JSON.stringify(cfg)], { stdio: ["pipe", "pipe", "pipe"] });
  const connections: LoadConnection[] = [];
  const events = lines(child);
  let done!: () => void;
  let failed!: (err: Error) => void;
  const finished = new Promise<void>((resolve, reject) => ((done = resolve), (failed = reject)));
  finished.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`load client in ${ns} exited (${String(code)}) before starting`)));
    // Once its output is all read: without "done" by then, stop() would wait for ever.
    child.once("close", (code) => failed(new Error(`load client in ${ns} exited (${String(code)}) before it was done`)));
    events((m) => {
      if (m["event"] === "started") resolve();
      else if (m["event"] === "conn") connections.push(m as unknown as LoadConnection);
      else if (m["event"] === "done") done();
    });
  });
  return {
    connections,
    async stop() {
      child.stdin!.write("stop\n");
      await finished;
      return connections;
    },
  };
}

export interface HeldConnection {
  /** The client's own address, "ip:port". */
  readonly local: string;
  /** Send `bytes` random bytes; resolves once they came back (true: intact). */
  send(bytes: number): Promise<boolean>;
  /** Half-close; the end is reported through `closed`. */
  end(): void;
  /** How the connection ended: `clean` only for a FIN after ours, with every byte echoed. */
  readonly closed: Promise<{ clean: boolean; error?: string }>;
  kill(): void;
}

/** One long-lived connection from `ns` to host:port (an echo server), driven step by step. */
export async function holdConnection(lab: Lab, ns: string, host: string, port: number): Promise<HeldConnection> {
  const child = lab.spawn(ns, [process.execPath, "-e", HOLD, host, String(port)], { stdio: ["pipe", "pipe", "pipe"] });
  const events = lines(child);
  const echoes: ((ok: boolean) => void)[] = [];
  let onClosed!: (r: { clean: boolean; error?: string }) => void;
  const closed = new Promise<{ clean: boolean; error?: string }>((r) => (onClosed = r));
  const local = await new Promise<string>((resolve, reject) => {
    events((m) => {
      if (m["event"] === "open") resolve(String(m["local"]));
      else if (m["event"] === "echoed") echoes.shift()?.(m["ok"] === true);
      else if (m["event"] === "closed") {
        for (const e of echoes.splice(0)) e(false);
        onClosed({ clean: m["clean"] === true, ...(m["error"] ? { error: String(m["error"]) } : {}) });
        reject(new Error(`held connection from ${ns} to ${host}:${port} closed before it opened (${String(m["error"])})`));
      }
    });
  });
  return {
    local,
    send(bytes) {
      return new Promise((resolve) => {
        echoes.push(resolve);
        child.stdin!.write(`send ${bytes}\n`);
      });
    },
    end: () => void child.stdin!.write("end\n"),
    closed,
    kill: () => void child.kill("SIGKILL"),
  };
}

/** Subscribe to the child's JSON lines (stderr is kept for the error of an early exit). */
function lines(child: ChildProcess): (on: (m: Record<string, unknown>) => void) => void {
  const subscribers: ((m: Record<string, unknown>) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(l) as Record<string, unknown>;
    } catch {
      return;
    }
    for (const s of subscribers) s(m);
  });
  return (on) => void subscribers.push(on);
}
