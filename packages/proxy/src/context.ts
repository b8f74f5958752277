import type net from "node:net";
import type { Logger } from "pino";
import type { CertManager } from "@zt/identity";
import type { MeshStore } from "@zt/state";
import type { Dialer } from "./dial.js";
import type { FdBudget } from "./fd-budget.js";
import type { HbonePool } from "./pool.js";
import type { ReceiveBudget } from "./receive-budget.js";
import type { ConnectionObserver, ConnectionRecord, ConnectionSnapshot } from "./types.js";

/** Everything the data path needs, resolved once by the agent. */
export interface ProxyContext {
  readonly nodeName: string;
  readonly trustDomain: string;
  readonly outboundPolicy: "ALLOW_ANY" | "REGISTRY_ONLY";
  /** Port HBONE peers listen on (15008). */
  readonly hbonePort: number;
  /** Ports of this agent's own listeners: never a destination (loop protection). */
  readonly ownPorts: ReadonlySet<number>;
  /** True when `ip` is one of this host's addresses (loop protection). */
  readonly isLocalAddress: (ip: string) => boolean;
  readonly store: MeshStore;
  readonly certs: CertManager;
  readonly pool: HbonePool;
  readonly observer: ConnectionObserver;
  readonly logger: Logger;
  readonly streamWindowSize: number;
  readonly connectionWindowSize: number;
  readonly connectTimeoutMs: number;
  /** Opens upstream sockets (marked and with the client's source address under capture). */
  readonly dialer: Dialer;
  /** Descriptors the data path may hold, per listener and in all. */
  readonly fds: FdBudget;
  /** Bytes HBONE connections may hold unconsumed (both sides share it). */
  readonly receiveBudget: ReceiveBudget;
  /** Something threw where nothing could handle it (a housekeeping timer, an event handler): logged and counted; the connection involved, if any, is reset. */
  readonly onFault: (where: string, err: unknown) => void;
  /**
   * SO_LINGER {1, 0} on (or off): set while a proxied TCP connection is open, so that if the
   * agent dies (SIGKILL, OOM) the kernel resets it rather than sending a FIN that would pass
   * truncated data off as complete; cleared before a graceful close. Absent without the addon.
   */
  readonly lingerReset?: (socket: net.Socket, on: boolean) => void;
  /** Live connections, so a drain can wait for them and then cut the rest, and a change of policies re-decide them. */
  readonly live: Set<LiveConnection>;
  /**
   * Connections whose destination is being dialled (an outbound one waiting for its HBONE 200
   * or TCP connect, an inbound stream or 15006 connection dialling its workload): their
   * records, added and removed around the dial (no timer, no closure), for the admin's list.
   */
  readonly connecting: Set<ConnectionRecord>;
}

export interface LiveConnection {
  /** Its record (direction, listener, source, destination): read-only for anyone but the relay. */
  readonly rec: Readonly<ConnectionRecord>;
  /** Reset it now (the drain window ended). */
  destroy(): void;
  /** Decide its authorization again (inbound ones; the others ignore it). */
  reauthorize(): void;
  /** What it is now, for the admin's list: a fresh plain object, bytes read from the sockets now. */
  snapshot(): ConnectionSnapshot;
}
