/** Binding a listener, with errors an operator can act on. */
import type { AddressInfo } from "node:net";
import type net from "node:net";
import { formatHostPort, ZtError } from "@zt/state";

export interface ListenTarget {
  readonly ip: string;
  readonly port: number;
}

/**
 * Listen on `addr` and resolve with the bound address (useful with port 0). Rejects with
 * ZtError BIND_FAILED naming the address, the errno and, when given, the variable to change.
 */
export function listen(server: net.Server, addr: ListenTarget, opts: { env?: string } = {}): Promise<AddressInfo> {
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
    server.listen({ host: addr.ip, port: addr.port, exclusive: true });
  });
}

function bindError(err: NodeJS.ErrnoException, addr: ListenTarget, env: string | undefined): ZtError {
  const where = formatHostPort(addr.ip, addr.port);
  const fix = env ? `; set ${env}` : "";
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
