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
  /** One listener for every socket (it is the emitter's `this`), removed once the socket proved itself. */
  private readonly forget: (this: net.Socket) => void;

  constructor() {
    const sockets = this.sockets;
    this.forget = function (this: net.Socket) {
      sockets.delete(this);
    };
  }

  add(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on("close", this.forget);
  }

  /** The socket proved itself (or was refused): it is no longer evictable. */
  done(socket: net.Socket): void {
    this.sockets.delete(socket);
    socket.removeListener("close", this.forget);
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
    if (!ctx.fds.admit(name, socket)) {
      if (unproven?.evictOldest()) {
        ctx.observer.dropped(name, "evicted");
        ctx.fds.admit(name, socket, true);
      } else {
        socket.on("error", () => {});
        socket.resetAndDestroy();
        ctx.observer.dropped(name, "full");
        return;
      }
    }
    unproven?.add(socket);
    onConnection(socket);
  });
  return server;
}

/** A handler that threw past its own catch: the connection is reset (fail closed) and the fault reported. */
export function lastResort(ctx: Pick<ProxyContext, "onFault">, client: net.Socket, where: string, err: unknown): void {
  if (!client.destroyed) client.resetAndDestroy();
  ctx.onFault(where, err);
}
