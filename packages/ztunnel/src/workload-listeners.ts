/**
 * `INBOUND_ADDR=workloads:<port>`: one HBONE listener on each IP of an HBONE workload of this
 * node, kept in step with the workload file. A bind that fails is retried (on every change of
 * the file, and every `retryMs` while any fails) and keeps readiness at 503, naming the
 * address and why, with a hint that fits the error.
 */
import type net from "node:net";
import type { Logger } from "pino";
import type { ProxyContext } from "@zt/proxy";
import { ZtError } from "@zt/errors";
import { formatHostPort } from "@zt/state";
import type { Config } from "./config.js";
import { listen, type ListenOpts } from "./listen.js";

export interface WorkloadListeners {
  /** Bind what is missing, close what is no longer wanted. */
  sync(): Promise<void>;
  /** One line per workload IP that could not be bound; empty when all are. */
  pending(): string[];
  servers(): net.Server[];
  /** Stop listening (and retrying); live connections carry on. */
  close(): void;
}

export interface WorkloadListenerDeps {
  readonly config: Config;
  readonly ctx: ProxyContext;
  readonly logger: Logger;
  readonly port: number;
  /** How each binds (SO_REUSEPORT when several workers bind each address). */
  readonly listenOpts?: ListenOpts;
  /** A new (not yet listening) HBONE listener. */
  readonly create: () => net.Server;
  /** Called on every bound server (the permanent error handler). */
  readonly bound: (server: net.Server) => void;
  readonly retryMs?: number;
  /** Whether this one logs its binds (with several workers, the first speaks for all: each meets the same). */
  readonly logBinds?: boolean;
}

export function createWorkloadListeners(d: WorkloadListenerDeps): WorkloadListeners {
  const servers = new Map<string, net.Server>();
  const failed = new Map<string, string>(); // ip -> why, as shown by readiness
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  const wanted = (): Map<string, string> => {
    const want = new Map<string, string>(); // ip -> "namespace/name"
    for (const w of d.ctx.store.workloadsOnNode(d.config.nodeName)) if (w.protocol === "HBONE") for (const ip of w.workloadIps) want.set(ip, `${w.namespace}/${w.name}`);
    return want;
  };

  const once = async (): Promise<void> => {
    const want = wanted();
    for (const [ip, s] of servers) if (!want.has(ip)) (s.close(), servers.delete(ip));
    for (const ip of failed.keys()) if (!want.has(ip)) failed.delete(ip);
    for (const [ip, workload] of want) {
      if (servers.has(ip) || closed) continue;
      const s = d.create();
      try {
        await listen(s, { ip, port: d.port }, d.listenOpts ?? {});
      } catch (err) {
        const why = bindFailure(err, ip, workload, d.config.nodeName);
        if (failed.get(ip) !== why && d.logBinds !== false) d.logger.error({ ip, workload, code: errno(err) }, `cannot bind HBONE inbound ${formatHostPort(ip, d.port)}: ${why}`);
        failed.set(ip, why);
        continue;
      }
      if (closed) {
        s.close();
        continue;
      }
      if (failed.delete(ip) && d.logBinds !== false) d.logger.info({ ip, workload }, `HBONE inbound ${formatHostPort(ip, d.port)} bound after all`);
      d.bound(s);
      servers.set(ip, s);
    }
    if (failed.size > 0 && !closed) {
      retry ??= setInterval(() => void sync(), d.retryMs ?? 2000);
      retry.unref();
    } else if (retry) {
      clearInterval(retry);
      retry = undefined;
    }
  };

  // One pass at a time; a change during a pass triggers one more.
  const sync = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await once();
      } while (again && !closed);
    })().finally(() => (running = undefined));
    return running;
  };

  return {
    sync,
    pending: () => [...failed].map(([ip, why]) => `HBONE inbound ${formatHostPort(ip, d.port)} not bound: ${why}`),
    servers: () => [...servers.values()],
    close() {
      closed = true;
      if (retry) clearInterval(retry);
      retry = undefined;
      for (const s of servers.values()) if (s.listening) s.close();
      servers.clear();
      failed.clear();
    },
  };
}

function errno(err: unknown): string | undefined {
  const cause = err instanceof ZtError ? err.cause : err;
  return (cause as NodeJS.ErrnoException | undefined)?.code;
}

/** listen()'s message, plus what to do about it for a workload IP. */
function bindFailure(err: unknown, ip: string, workload: string, node: string): string {
  const message = err instanceof Error ? err.message : String(err);
  switch (errno(err)) {
    case "EADDRNOTAVAIL":
      return `${message}; the workload file puts ${workload} (${ip}) on NODE_NAME=${node}, but this host does not have that address (wrong node in the file, or INBOUND_ADDR=workloads: outside a loopback setup)`;
    case "EADDRINUSE":
      return `${message} (is another agent running for ${workload}?)`;
    default:
      return message;
  }
}
