import { createRequire } from "node:module";
import net from "node:net";

/** The addon's raw functions (see native/sockopt.c). */
interface Native {
  setTransparent(fd: number): void;
  getTransparent(fd: number): boolean;
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
  openTcpSocket(family: 4 | 6, mark: number, transparent: boolean, bindIp: string | null, bufferBytes: number): number;
  getBuffers(fd: number): [snd: number, rcv: number];
  releaseFreedMemory(): boolean;
  listenTcp(family: 4 | 6, ip: string, port: number, reusePort: boolean, transparent: boolean, backlog: number): number;
  getReusePort(fd: number): boolean;
  setLingerReset(fd: number, on: 0 | 1): void;
  getLingerReset(fd: number): boolean;
  closeFd(fd: number): void;
}

const ADDON_PATH = "../build/Release/sockopt.node";

function load(): { native?: Native; error?: string } {
  if (process.platform !== "linux") return { error: `the socket-option addon is Linux-only (this is ${process.platform})` };
  try {
    // ZT_SOCKOPT_ADDON: a prebuilt addon elsewhere (packaging), or a broken path (tests of the fallback).
    return { native: createRequire(import.meta.url)(process.env["ZT_SOCKOPT_ADDON"] ?? ADDON_PATH) as Native };
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return { error: `the socket-option addon did not load (${why}); rebuild it with \`pnpm --filter @zt/sockopt run install\`` };
  }
}

const loaded = load();

/** Whether IP_TRANSPARENT / SO_MARK are available here, and if not, why (an operator-facing sentence). */
export const sockopt: { readonly available: boolean; readonly reason: string | undefined } = {
  available: loaded.native !== undefined,
  reason: loaded.error,
};

function native(): Native {
  if (!loaded.native) throw Object.assign(new Error(loaded.error), { code: "ADDON_UNAVAILABLE" });
  return loaded.native;
}

/** The file descriptor behind a listening server or a connected socket (Linux, TCP). */
export function fdOf(handleOwner: net.Server | net.Socket): number {
  const h = (handleOwner as unknown as { _handle?: { fd?: number } | null })._handle;
  const fd = h?.fd;
  if (typeof fd !== "number" || fd < 0) throw Object.assign(new Error("socket has no file descriptor (not listening/connected yet?)"), { code: "NO_FD" });
  return fd;
}

/** IP_TRANSPARENT on a listener, so TPROXY may hand it connections for any address. */
export function setTransparent(server: net.Server): void {
  native().setTransparent(fdOf(server));
}

export function isTransparent(s: net.Server | net.Socket): boolean {
  return native().getTransparent(fdOf(s));
}

export function markOf(s: net.Server | net.Socket): number {
  return native().getMark(fdOf(s));
}

/** SO_SNDBUF and SO_RCVBUF as the kernel reports them (tests, diagnostics). */
export function buffersOf(s: net.Socket): { snd: number; rcv: number } {
  const [snd, rcv] = native().getBuffers(fdOf(s));
  return { snd, rcv };
}

export function isReusePort(s: net.Server | net.Socket): boolean {
  return native().getReusePort(fdOf(s));
}

/**
 * SO_LINGER {on, 0}: while set, closing the socket resets the connection instead of
 * sending a FIN — and so does the kernel when the process dies (SIGKILL, OOM), when it
 * closes every descriptor itself. Clear it before a graceful close: a reset discards what
 * the peer has not acknowledged yet.
 */
export function setLingerReset(s: net.Socket, on: boolean): void {
  native().setLingerReset(fdOf(s), on ? 1 : 0);
}

export function isLingerReset(s: net.Socket): boolean {
  return native().getLingerReset(fdOf(s));
}

export interface ListenOptions {
  /** SO_REUSEPORT: several processes (an agent and its successor) listen on the same address. */
  readonly reusePort?: boolean;
  /** IP_TRANSPARENT, so TPROXY may hand the listener connections for any address. */
  readonly transparent?: boolean;
  readonly backlog?: number;
}

/**
 * A listening TCP socket with options Node 20 cannot set before bind() (`reusePort` arrived
 * in Node 22.12): returns its file descriptor, for `server.listen({ fd })`, which adopts it.
 * Throws a coded error (EADDRINUSE, EADDRNOTAVAIL, EPERM, ...) with the failing `syscall`.
 */
export function openListener(ip: string, port: number, opts: ListenOptions = {}): number {
  return native().listenTcp(net.isIPv6(ip) ? 6 : 4, ip, port, opts.reusePort ?? false, opts.transparent ?? false, opts.backlog ?? 511);
}

/**
 * `server.listen()` on a socket from {@link openListener}: 'listening' (or 'error') follows
 * as with a plain listen(); a bind failure throws here, before the server is touched.
 */
export function listenWithOptions(server: net.Server, ip: string, port: number, opts: ListenOptions = {}): void {
  const fd = openListener(ip, port, opts);
  try {
    server.listen({ fd, backlog: opts.backlog ?? 511 });
  } catch (e) {
    native().closeFd(fd);
    throw e;
  }
}

export interface OpenOptions {
  /** SO_MARK for every packet of the connection (0: none). */
  readonly mark?: number;
  /** Source address; a non-local one needs `transparent`. */
  readonly bindIp?: string | undefined;
  readonly transparent?: boolean;
  /** Fixed SO_SNDBUF and SO_RCVBUF (the kernel doubles it and stops autotuning): bounds the kernel memory one connection can pin. */
  readonly bufferBytes?: number;
}

/**
 * A TCP connection opened with options Node cannot set before connect(): SO_MARK,
 * IP_TRANSPARENT and a (possibly non-local) source address. Returns a connecting
 * net.Socket: 'connect' or 'error' follows as with net.connect().
 */
export function connectTcp(ip: string, port: number, opts: OpenOptions, socketOptions: { allowHalfOpen?: boolean } = {}): net.Socket {
  const n = native();
  const family = net.isIPv6(ip) ? 6 : 4;
  const fd = n.openTcpSocket(family, opts.mark ?? 0, opts.transparent ?? false, opts.bindIp ?? null, opts.bufferBytes ?? 0);
  let s: net.Socket;
  try {
    // manualStart: do not start reading an fd that is not connected yet (connect() starts it).
    s = new net.Socket({ fd, manualStart: true, allowHalfOpen: socketOptions.allowHalfOpen ?? false } as net.SocketConstructorOpts);
  } catch (e) {
    n.closeFd(fd);
    throw e;
  }
  return s.connect({ port, host: ip });
}

/**
 * Give the memory the C allocator holds but nobody uses back to the kernel (glibc's
 * malloc_trim). Freed buffers otherwise stay in the allocator's arenas, and the resident
 * size stays at its peak after a burst. False when nothing was released or the addon is
 * missing.
 */
export function releaseFreedMemory(): boolean {
  return loaded.native?.releaseFreedMemory() ?? false;
}
