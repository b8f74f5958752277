/** Binding a listener, with errors an operator can act on. */
import type { AddressInfo } from "node:net";
import type net from "node:net";
import { listenWithOptions } from "@zt/sockopt";
import { ZtError } from "@zt/errors";
import { formatHostPort } from "@zt/state";

export interface ListenTarget {
  readonly ip: string;
  readonly port: number;
}

export interface ListenOpts {
  /** The variable that sets this address, named in errors. */
  readonly env?: string;
  /** SO_REUSEPORT (through @zt/sockopt): the node's next agent binds the same address. */
  readonly reusePort?: boolean;
  /** IP_TRANSPARENT (through @zt/sockopt), set before bind. */
  readonly transparent?: boolean;
}

/**
 * Listen on `addr` and resolve with the bound address (useful with port 0). Rejects with
 * ZtError BIND_FAILED naming the address, the errno and, when given, the variable to change
 * (CAPTURE_SOCKOPT_FAILED when a socket option could not be set). Without `reusePort` the
 * address is exclusive: a second agent on it fails with EADDRINUSE.
 */
export function listen(server: net.Server, addr: ListenTarget, opts: ListenOpts = {}): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off("listening", onListening);
      reject(bindError(err, addr, opts.env));
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    if (!opts.reusePort && !opts.transparent) {
      server.listen({ host: addr.ip, port: addr.port, exclusive: true });
      return;
    }
    try {
      listenWithOptions(server, addr.ip, addr.port, { reusePort: opts.reusePort ?? false, transparent: opts.transparent ?? false });
    } catch (err) {
      server.off("error", onError);
      server.off("listening", onListening);
      reject(bindError(err as NodeJS.ErrnoException, addr, opts.env));
    }
  });
}

function bindError(err: NodeJS.ErrnoException, addr: ListenTarget, env: string | undefined): ZtError {
  const where = formatHostPort(addr.ip, addr.port);
  const fix = env ? `; set ${env}` : "";
  if (err.syscall?.startsWith("setsockopt")) {
    return new ZtError("CAPTURE_SOCKOPT_FAILED", `cannot prepare the listener on ${where}: ${err.message}; REDIRECT_MODE=tproxy needs CAP_NET_ADMIN`, { cause: err });
  }
  let message: string;
  switch (err.code) {
    case "EADDRINUSE":
      message = `address already in use: another agent or process holds ${where}${fix}`;
      break;
    case "EADDRNOTAVAIL":
      message = `address not available: ${addr.ip} is not an address of this host, cannot bind ${where}${fix}`;
      break;
    case "EACCES":
    case "EPERM":
      message = `permission denied binding ${where} (ports below 1024 need privileges)${fix}`;
      break;
    default:
      message = `cannot bind ${where}: ${err.code ?? "error"} ${err.message}${fix}`;
  }
  return new ZtError("BIND_FAILED", message, { cause: err });
}

/** "ip:port" a listening server is bound to, "" when it is not. */
export function addrOf(s: net.Server): string {
  const a = s.address();
  return a && typeof a === "object" ? formatHostPort(a.address, a.port) : "";
}

/** Stop listening; resolves once closed (at once when it was not listening). */
export function closeServer(s: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!s.listening) return resolve();
    s.close(() => resolve());
  });
}
