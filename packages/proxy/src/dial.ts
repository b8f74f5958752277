import net from "node:net";
import { ProxyError, toProxyError } from "./errors.js";
import type { FdBudget } from "./fd-budget.js";

/**
 * Opens the agent's upstream TCP sockets. Returns a socket that is connecting; 'connect'
 * or 'error' follows. `srcIp` is the address the destination should see as the source;
 * a dialer without capture support ignores it (the host picks the source).
 */
export type Dialer = (ip: string, port: number, srcIp?: string) => net.Socket;

/** Plain net.connect: no marks, no source address (REDIRECT_MODE=none). */
export const plainDialer: Dialer = (ip, port) => net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true });

export interface DialDeps {
  readonly dialer: Dialer;
  readonly connectTimeoutMs: number;
  readonly fds: FdBudget;
}

export interface DialOptions {
  /** The source address the destination should see. */
  readonly srcIp?: string | undefined;
  /** Cancels the dial (the client went away). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Plain TCP connect with half-close and no Nagle, within the descriptor budget; rejects
 * with a ProxyError.
 */
export function dialTcp(d: DialDeps, ip: string, port: number, o: DialOptions = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const cancelled = (): ProxyError => new ProxyError("CLIENT_GONE", `the dial to ${ip}:${port} was cancelled`);
    if (o.signal?.aborted) return reject(cancelled());
    if (!d.fds.claim()) return reject(fdExhausted(d.fds));
    let s: net.Socket;
    try {
      s = d.dialer(ip, port, o.srcIp);
    } catch (err) {
      d.fds.giveBack();
      reject(new ProxyError("UPSTREAM_SOCKET_FAILED", `cannot open a socket to ${ip}:${port}${o.srcIp ? ` from ${o.srcIp}` : ""}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    d.fds.held(s);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ProxyError("UPSTREAM_TIMEOUT", `connect to ${ip}:${port} timed out after ${d.connectTimeoutMs} ms`));
    }, d.connectTimeoutMs);
    const onAbort = (): void => {
      clearTimeout(timer);
      s.destroy();
      reject(cancelled());
    };
    o.signal?.addEventListener("abort", onAbort, { once: true });
    s.once("connect", () => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      s.removeListener("error", onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      reject(toProxyError(err, "UPSTREAM_SOCKET_FAILED"));
    };
    s.once("error", onError);
  });
}

export function fdExhausted(fds: FdBudget): ProxyError {
  const { inUse, capacity } = fds.stats();
  return new ProxyError("FD_EXHAUSTED", `the data path holds ${inUse} of the ${capacity} descriptors it may use; refusing new connections until some close (raise the agent's open-files limit if this is load, not an attack)`);
}
