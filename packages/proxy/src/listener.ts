import net from "node:net";
import type { ProxyContext } from "./context.js";
import type { DataListener } from "./fd-budget.js";

/**
 * Connections a listener accepted that have not proven anything yet (no TLS handshake, no
 * SOCKS5 request): when the listener is full, the oldest of them makes room for a new one,
 * so idle connections cannot lock out clients that complete their handshake in time.
 */
export class Unproven {
  private readonly sockets = new Set<net.Socket>();

  add(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  }

  /** The socket proved itself (or was refused): it is no longer evictable. */
  done(socket: net.Socket): void {
    this.sockets.delete(socket);
  }

  /** Reset the oldest unproven socket; false when there is none. */
  evictOldest(): boolean {
    const oldest = this.sockets.values().next();
    if (oldest.done) return false;
    this.sockets.delete(oldest.value);
    oldest.value.resetAndDestroy();
    return true;
  }
}

/**
 * A TCP listener with the options every proxy listener uses. A connection past the
 * listener's share of descriptors (or the data path's) is reset at once and counted,
 * not logged one by one: a flood must not become a flood of log lines. With `unproven`,
 * the oldest connection still in its handshake is reset instead, to make room.
 */
export function createProxyListener(ctx: Pick<ProxyContext, "fds" | "observer">, name: DataListener, onConnection: (socket: net.Socket) => void, unproven?: Unproven): net.Server {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
    if (!ctx.fds.admit(name, socket) && !(unproven?.evictOldest() && ctx.fds.admit(name, socket, true))) {
      socket.on("error", () => {});
      socket.resetAndDestroy();
      ctx.observer.dropped(name);
      return;
    }
    unproven?.add(socket);
    onConnection(socket);
  });
  return server;
}
