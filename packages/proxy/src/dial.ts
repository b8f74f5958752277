import net from "node:net";
import { ProxyError, toProxyError } from "./errors.js";

/**
 * Opens the agent's upstream TCP sockets. Returns a socket that is connecting; 'connect'
 * or 'error' follows. `srcIp` is the address the destination should see as the source;
 * a dialer without capture support ignores it (the host picks the source).
 */
export type Dialer = (ip: string, port: number, srcIp?: string) => net.Socket;

/** Plain net.connect: no marks, no source address (REDIRECT_MODE=none). */
export const plainDialer: Dialer = (ip, port) => net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true });

/** Plain TCP connect with half-close and no Nagle; rejects with a ProxyError. `signal` cancels the dial. */
export function dialTcp(dialer: Dialer, ip: string, port: number, timeoutMs: number, srcIp?: string, signal?: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ProxyError("CLIENT_GONE", `the dial to ${ip}:${port} was cancelled`));
    let s: net.Socket;
    try {
      s = dialer(ip, port, srcIp);
    } catch (err) {
      reject(new ProxyError("UPSTREAM_SOCKET_FAILED", `cannot open a socket to ${ip}:${port}${srcIp ? ` from ${srcIp}` : ""}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ProxyError("UPSTREAM_TIMEOUT", `connect to ${ip}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onAbort = (): void => {
      clearTimeout(timer);
      s.destroy();
      reject(new ProxyError("CLIENT_GONE", `the dial to ${ip}:${port} was cancelled`));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    s.once("connect", () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      s.removeListener("error", onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      reject(toProxyError(err, "UPSTREAM_SOCKET_FAILED"));
    };
    s.once("error", onError);
  });
}
