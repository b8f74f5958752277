/**
 * The benchmark's server, run as a child process of the runner (so that its sockets and its
 * CPU are not the load generator's). One listener per address given on the command line
 * ("host:port", port 0 = any); the chosen ports go back to the parent over IPC.
 *
 * Protocol, decided by the first byte the client sends:
 *   'E'  echo: every later byte is sent back.
 *   'S'  sink: an 8-byte big-endian length N follows, then N bytes that are discarded;
 *        once all N have arrived the server answers one byte 'K'.
 *   'C'  echo and close: one length byte N follows, then N bytes that are echoed; then the
 *        server closes (FIN) first.
 * A FIN from the client is answered with a FIN. The IPC message "closeAll" makes the server
 * close (FIN) every connection it holds.
 *
 * Watching (for bench/src/resilience.ts): the IPC message { cmd: "watch" } marks every
 * connection open now; the server notes how and when each of them ends (a reset, a FIN,
 * anything else), on the machine's monotonic clock (process.hrtime, shared by every process
 * of the machine). { cmd: "watched" } answers with what it noted and how many are still open,
 * { cmd: "watchedOpen" } with the count only.
 *
 * Where it can, the server closes first so that TIME_WAIT lands on its side: the load
 * generator's source ports are few when it binds a source IP (the mesh path), and a port in
 * TIME_WAIT cannot be bound again for a minute.
 */
import net from "node:net";

const MODE_ECHO = 0x45; // 'E'
const MODE_SINK = 0x53; // 'S'
const MODE_CLOSE = 0x43; // 'C'
const ACK = Buffer.from("K");
const open = new Set<net.Socket>();

/** How a watched connection ended, and when (ms on the monotonic clock). */
interface Ending {
  how: "reset" | "fin" | "other";
  ms: number;
  code?: string;
}
/** Watched connections: null while open. */
let watched = new Map<net.Socket, Ending | null>();

function ended(sock: net.Socket, how: Ending["how"], code?: string): void {
  if (watched.get(sock) !== null) return; // not watched, or ended already
  watched.set(sock, { how, ms: Number(process.hrtime.bigint()) / 1e6, ...(code !== undefined ? { code } : {}) });
}

function handle(sock: net.Socket): void {
  sock.setNoDelay(true);
  open.add(sock);
  sock.once("close", () => {
    open.delete(sock);
    ended(sock, "other", "close");
  });
  sock.on("error", (e: NodeJS.ErrnoException) => ended(sock, e.code === "ECONNRESET" ? "reset" : "other", e.code));
  sock.on("end", () => {
    ended(sock, "fin");
    sock.end();
  });
  let closeAfter = -1;
  let mode = 0;
  let header: Buffer = Buffer.alloc(0);
  let expected = -1;
  let got = 0;
  const echo = (c: Buffer): void => {
    if (c.length === 0) return;
    if (!sock.write(c)) {
      sock.pause();
      sock.once("drain", () => sock.resume());
    }
  };
  const sink = (c: Buffer): void => {
    if (expected < 0) {
      header = header.length ? Buffer.concat([header, c]) : c;
      if (header.length < 8) return;
      expected = Number(header.readBigUInt64BE(0));
      c = header.subarray(8);
      header = Buffer.alloc(0);
    }
    got += c.length;
    if (got >= expected && expected >= 0) {
      expected = Number.MAX_SAFE_INTEGER; // answer once
      sock.write(ACK);
    }
  };
  const echoClose = (c: Buffer): void => {
    if (closeAfter < 0) {
      if (c.length === 0) return;
      closeAfter = c[0]!;
      c = c.subarray(1);
    }
    const n = Math.min(c.length, closeAfter);
    closeAfter -= n;
    if (n) sock.write(c.subarray(0, n));
    if (closeAfter === 0) {
      closeAfter = -2;
      sock.end();
    }
  };
  sock.on("data", (chunk: Buffer) => {
    if (mode === 0) {
      mode = chunk[0] ?? 0;
      chunk = chunk.subarray(1);
      if (mode !== MODE_ECHO && mode !== MODE_SINK && mode !== MODE_CLOSE) {
        sock.destroy();
        return;
      }
    }
    if (mode === MODE_ECHO) echo(chunk);
    else if (mode === MODE_SINK) sink(chunk);
    else if (closeAfter !== -2) echoClose(chunk);
  });
}

async function main(): Promise<void> {
  const addrs = process.argv.slice(2);
  const ports: number[] = [];
  for (const a of addrs) {
    const i = a.lastIndexOf(":");
    const host = a.slice(0, i);
    const port = Number(a.slice(i + 1));
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, handle);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, backlog: 4096 }, () => resolve());
    });
    server.on("error", () => {});
    ports.push((server.address() as net.AddressInfo).port);
  }
  process.on("message", (m) => {
    if (m === "closeAll") {
      const n = open.size;
      for (const s of open) s.end();
      process.send?.({ closed: n });
    } else if (typeof m === "object" && m !== null && "cmd" in m) {
      if (m.cmd === "watch") {
        watched = new Map([...open].map((s) => [s, null]));
        process.send?.({ reply: "watch", watching: watched.size });
      } else if (m.cmd === "watched" || m.cmd === "watchedOpen") {
        const endings = [...watched.values()].filter((e): e is Ending => e !== null);
        process.send?.({ reply: m.cmd, open: watched.size - endings.length, ...(m.cmd === "watched" ? { endings } : {}) });
      }
    }
  });
  process.send?.({ ready: true, ports });
  // The parent going away (IPC closed) ends this process.
  process.on("disconnect", () => process.exit(0));
}

main().catch((err: unknown) => {
  process.send?.({ ready: false, error: String((err as Error).stack ?? err) });
  process.exit(1);
});
