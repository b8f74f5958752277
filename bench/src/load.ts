/**
 * The load generators. Each takes `open`, which yields a connected socket to the bench
 * server through one path (direct, stunnel, mesh), and is bounded by a count and a deadline.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { treeRssKiB } from "./procfs.js";
import { errMsg, percentile, sleep, withTimeout } from "./util.js";

export type Open = () => Promise<net.Socket>;

/** A plain TCP connection to host:port (no delay), paused until the caller reads. */
export function tcpOpen(host: string, port: number): Open {
  return () =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host, port, noDelay: true });
      s.once("error", reject);
      s.once("connect", () => {
        s.removeListener("error", reject);
        s.pause();
        resolve(s);
      });
    });
}

const OPEN_TIMEOUT_MS = 10_000;
const CHUNK = 256 * 1024;
const BUF = randomBytes(CHUNK);

/** Open with a timeout; a socket that arrives late is closed. */
export function openBounded(open: Open): Promise<net.Socket> {
  return withTimeout(open(), OPEN_TIMEOUT_MS, "connect", (s) => s.destroy());
}

/** Send `data` (after the mode byte 'E') and resolve once the same bytes came back. */
export function echoOnce(sock: net.Socket, data: Buffer, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const t = setTimeout(() => done(new Error(`echo: timed out after ${timeoutMs} ms (${got} of ${data.length} bytes back)`)), timeoutMs);
    const onData = (c: Buffer): void => {
      parts.push(c);
      got += c.length;
      if (got >= data.length) {
        const back = Buffer.concat(parts);
        done(back.subarray(0, data.length).equals(data) ? undefined : new Error("echo: bytes differ"));
      }
    };
    const onErr = (e: Error): void => done(e);
    const onClose = (): void => done(new Error(`echo: closed after ${got} of ${data.length} bytes`));
    function done(err?: Error): void {
      clearTimeout(t);
      sock.removeListener("data", onData);
      sock.removeListener("error", onErr);
      sock.removeListener("close", onClose);
      sock.pause();
      if (err) reject(err);
      else resolve();
    }
    sock.on("data", onData);
    sock.once("error", onErr);
    sock.once("close", onClose);
    sock.resume();
    sock.write(Buffer.concat([Buffer.from("E"), data]));
  });
}

/**
 * Send 'C', a length byte and `data`; resolve once the same bytes came back and the server
 * closed (FIN) after them, so that TIME_WAIT lands on the server's side.
 */
export function echoServerCloses(sock: net.Socket, data: Buffer, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let got = 0;
    const t = setTimeout(() => done(new Error(`echo+close: timed out after ${timeoutMs} ms (${got} of ${data.length} bytes back, no FIN)`)), timeoutMs);
    const onData = (c: Buffer): void => {
      got += c.length;
    };
    const onEnd = (): void => done(got === data.length ? undefined : new Error(`echo+close: FIN after ${got} of ${data.length} bytes`));
    const onErr = (e: Error): void => done(e);
    const onClose = (): void => done(new Error(`echo+close: closed after ${got} of ${data.length} bytes without a FIN`));
    function done(err?: Error): void {
      clearTimeout(t);
      sock.removeListener("data", onData);
      sock.removeListener("end", onEnd);
      sock.removeListener("error", onErr);
      sock.removeListener("close", onClose);
      if (err) reject(err);
      else resolve();
    }
    sock.on("data", onData);
    sock.once("end", onEnd);
    sock.once("error", onErr);
    sock.once("close", onClose);
    sock.resume();
    sock.write(Buffer.concat([Buffer.from([0x43, data.length]), data]));
  });
}

/** One connection, one echo of random bytes compared end to end: proves a path works. */
export async function preflight(open: Open, size = 64 * 1024): Promise<void> {
  const sock = await openBounded(open);
  try {
    await echoOnce(sock, randomBytes(size), 10_000);
  } finally {
    sock.destroy();
  }
}

export interface SinkResult {
  readonly bytes: number;
  readonly ms: number;
  /** Stopped by the deadline (bytes = what was handed to the socket). */
  readonly capped: boolean;
  readonly error?: string;
}

/** Push `total` bytes to the sink and wait for its acknowledgement that all arrived. */
function sinkSend(sock: net.Socket, total: number, deadline: number): Promise<SinkResult> {
  const header = Buffer.alloc(9);
  header[0] = 0x53; // 'S'
  header.writeBigUInt64BE(BigInt(total), 1);
  return new Promise<SinkResult>((resolve) => {
    let done = false;
    let sent = 0;
    const t0 = performance.now();
    const finish = (capped: boolean, err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const ms = performance.now() - t0;
      sock.destroy();
      resolve({ bytes: capped ? sent : total, ms, capped, ...(err ? { error: err.message } : {}) });
    };
    const timer = setTimeout(() => finish(true), Math.max(0, deadline - Date.now()));
    sock.on("data", (c: Buffer) => {
      if (c.includes(0x4b)) finish(false);
    });
    sock.on("error", (e) => finish(true, e));
    sock.on("close", () => finish(true, new Error("closed before the sink acknowledged")));
    sock.resume();
    sock.write(header);
    const pump = (): void => {
      while (!done && sent < total) {
        const n = Math.min(CHUNK, total - sent);
        sent += n;
        if (!sock.write(n === CHUNK ? BUF : BUF.subarray(0, n))) {
          sock.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
}

export interface ThroughputResult {
  readonly mibPerSec: number;
  readonly bytes: number;
  readonly ms: number;
  readonly conns: number;
  readonly capped: boolean;
  readonly errors: string[];
}

/** `conns` connections each pushing `perConn` bytes at once; aggregate rate over the whole. */
export async function throughput(open: Open, conns: number, perConn: number, capMs: number): Promise<ThroughputResult> {
  const socks = await Promise.all(Array.from({ length: conns }, () => openBounded(open)));
  const deadline = Date.now() + capMs;
  const t0 = performance.now();
  const results = await Promise.all(socks.map((s) => sinkSend(s, perConn, deadline)));
  const ms = performance.now() - t0;
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  const errors = results.filter((r) => r.error).map((r) => r.error!);
  return { mibPerSec: bytes / (1 << 20) / (ms / 1000), bytes, ms, conns, capped: results.some((r) => r.capped), errors };
}

export interface LatencyResult {
  readonly n: number;
  readonly p50us: number;
  readonly p99us: number;
  readonly p999us: number;
  readonly meanUs: number;
  readonly rounds: number;
  readonly capped: boolean;
}

export interface LatencySamples {
  /** Round-trip times in ms. */
  readonly samples: Float64Array;
  readonly capped: boolean;
}

/** Round trips of `size` bytes on one new connection, one at a time, after `warm` unrecorded ones. */
export async function latencySamples(open: Open, o: { warm: number; n: number; size: number; capMs: number }): Promise<LatencySamples> {
  const sock = await openBounded(open);
  sock.setNoDelay(true);
  const payload = randomBytes(o.size);
  const samples = new Float64Array(o.n);
  const deadline = Date.now() + o.capMs;
  try {
    return await new Promise<LatencySamples>((resolve, reject) => {
      let i = 0;
      let recorded = 0;
      let got = 0;
      let t = 0;
      const total = o.warm + o.n;
      const end = (capped: boolean): void => {
        sock.removeAllListeners("data");
        resolve({ samples: samples.subarray(0, recorded), capped });
      };
      const next = (): void => {
        if (i >= total) return end(false);
        if ((i & 255) === 0 && Date.now() > deadline) return end(true);
        i++;
        got = 0;
        t = performance.now();
        sock.write(payload);
      };
      sock.on("data", (c: Buffer) => {
        got += c.length;
        if (got < o.size) return;
        const dt = performance.now() - t;
        if (i > o.warm) samples[recorded++] = dt;
        next();
      });
      sock.once("error", reject);
      sock.once("close", () => reject(new Error(`closed after ${i} round trips`)));
      sock.resume();
      sock.write(Buffer.from("E"));
      next();
    });
  } finally {
    sock.removeAllListeners("close");
    sock.destroy();
  }
}

/** Percentiles over the samples of several rounds. */
export function summarizeLatency(rounds: readonly LatencySamples[]): LatencyResult {
  const n = rounds.reduce((a, r) => a + r.samples.length, 0);
  const all = new Float64Array(n);
  let k = 0;
  let sum = 0;
  for (const r of rounds) {
    all.set(r.samples, k);
    k += r.samples.length;
    for (const v of r.samples) sum += v;
  }
  return {
    n,
    p50us: percentile(all, n, 50) * 1000,
    p99us: percentile(all, n, 99) * 1000,
    p999us: percentile(all, n, 99.9) * 1000,
    meanUs: (sum / n) * 1000,
    rounds: rounds.length,
    capped: rounds.some((r) => r.capped),
  };
}

export interface ConnRateResult {
  readonly perSec: number;
  readonly ok: number;
  readonly errors: number;
  readonly lastError?: string;
  readonly ms: number;
  /** Time from starting to connect until the echo and the server's FIN came back, per connection. */
  readonly p50ms: number;
  readonly p99ms: number;
}

/**
 * `concurrency` loops of: connect, echo 16 bytes, the server closes, the client closes;
 * for `durMs` or `maxCount` connections.
 */
export async function connRate(open: Open, o: { concurrency: number; durMs: number; maxCount: number }): Promise<ConnRateResult> {
  const payload = Buffer.from("0123456789abcdef");
  const lat = new Float64Array(o.maxCount);
  let started = 0;
  let ok = 0;
  let errors = 0;
  let lastError: string | undefined;
  const t0 = performance.now();
  const deadline = Date.now() + o.durMs;
  const worker = async (): Promise<void> => {
    while (Date.now() < deadline && started < o.maxCount) {
      started++;
      const t = performance.now();
      let sock: net.Socket | undefined;
      try {
        sock = await openBounded(open);
        await echoServerCloses(sock, payload, 5000);
        lat[ok++] = performance.now() - t;
      } catch (e) {
        errors++;
        lastError = errMsg(e);
        if (errors > 1000) break;
      } finally {
        sock?.destroy();
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const ms = performance.now() - t0;
  return {
    perSec: ok / (ms / 1000),
    ok,
    errors,
    ...(lastError !== undefined ? { lastError } : {}),
    ms,
    p50ms: percentile(lat, ok, 50),
    p99ms: percentile(lat, ok, 99),
  };
}

export interface IdleResult {
  readonly target: number;
  readonly opened: number;
  readonly stillOpen: number;
  readonly errors: number;
  readonly lastError?: string;
  readonly openMs: number;
  readonly rssBeforeKiB: number;
  readonly rssAfterKiB: number;
  readonly rssAfterCloseKiB: number;
  readonly perConnKiB: number;
}

/**
 * Open `n` connections through the path (each carries one 1-byte echo so both sides are
 * set up end to end), leave them idle, and compare the proxies' RSS before and after.
 */
export async function idleMemory(
  open: Open,
  proxyPids: readonly number[],
  closeAll: () => void,
  o: { n: number; concurrency: number; capMs: number; settleMs: number },
  /** Called right after each RSS reading with the connections (idle.ts looks into the agents there). */
  hooks: { before?(): Promise<void>; held?(conns: number): Promise<void> } = {},
): Promise<IdleResult> {
  const rssBeforeKiB = treeRssKiB(proxyPids);
  await hooks.before?.();
  const socks: net.Socket[] = [];
  let started = 0;
  let errors = 0;
  let closed = 0;
  let lastError: string | undefined;
  const deadline = Date.now() + o.capMs;
  const t0 = performance.now();
  const one = Buffer.from("x");
  const worker = async (): Promise<void> => {
    while (started < o.n && Date.now() < deadline) {
      started++;
      let sock: net.Socket | undefined;
      try {
        sock = await openBounded(open);
        await echoOnce(sock, one, 10_000);
        const s = sock;
        s.on("error", () => {});
        s.once("end", () => s.destroy());
        s.once("close", () => closed++);
        socks.push(s);
      } catch (e) {
        sock?.destroy();
        errors++;
        lastError = errMsg(e);
        if (errors > 200) break;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    const openMs = performance.now() - t0;
    await sleep(o.settleMs);
    const rssAfterKiB = treeRssKiB(proxyPids);
    const stillOpen = socks.length - closed;
    await hooks.held?.(stillOpen);
    // The server closes first (TIME_WAIT on its side); wait for the FINs to come through.
    closeAll();
    for (let i = 0; i < 100 && closed < socks.length; i++) await sleep(100);
    for (const s of socks) s.destroy();
    socks.length = 0;
    await sleep(o.settleMs);
    const rssAfterCloseKiB = treeRssKiB(proxyPids);
    return {
      target: o.n,
      opened: started - errors,
      stillOpen,
      errors,
      ...(lastError !== undefined ? { lastError } : {}),
      openMs,
      rssBeforeKiB,
      rssAfterKiB,
      rssAfterCloseKiB,
      perConnKiB: stillOpen > 0 ? (rssAfterKiB - rssBeforeKiB) / stillOpen : NaN,
    };
  } finally {
    for (const s of socks) s.destroy();
  }
}

/** The round whose `key` is the median (lower median for an even count), with every round's key. */
export function medianRound<T extends object>(rounds: readonly T[], key: (v: T) => number): T & { roundValues: number[] } {
  const sorted = [...rounds].sort((a, b) => key(a) - key(b));
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return { ...mid, roundValues: rounds.map(key) };
}
