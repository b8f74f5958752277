import net from "node:net";
import { ProxyError, toProxyError } from "./errors.js";

/** Plain TCP connect with half-close and no Nagle; rejects with a ProxyError. */
export function dialTcp(ip: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ProxyError("UPSTREAM_TIMEOUT", "CONNECT", `connect to ${ip}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.removeListener("error", onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(toProxyError(err, "CONNECT"));
    };
    s.once("error", onError);
  });
}
