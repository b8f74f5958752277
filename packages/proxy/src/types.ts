/** What the proxy reports about each connection; the agent turns it into metrics and one log line. */

export type Direction = "inbound" | "outbound";

export type { ResponseFlag } from "@zt/errors";
import type { ConnectionCode, ResponseFlag } from "@zt/errors";

export interface PeerInfo {
  /** "ip:port" (IPv6 in brackets). */
  readonly addr: string;
  readonly workload?: string | undefined;
  readonly namespace?: string | undefined;
  /** SPIFFE id, e.g. spiffe://cluster.local/ns/default/sa/sleep. */
  readonly identity?: string | undefined;
  /** `app` label / canonical name. */
  readonly app?: string | undefined;
}

/** One proxied connection, from accept to close. Mutable while the connection lives. */
export interface ConnectionRecord {
  readonly direction: Direction;
  /** 15001 capture, 15080 socks5, 15008 hbone, 15006 plaintext. */
  readonly listener: "outbound" | "socks5" | "hbone" | "plaintext";
  readonly startMs: number;
  src: PeerInfo;
  dst: PeerInfo;
  /** "ip:15008" when carried over HBONE. */
  dstHboneAddr?: string | undefined;
  /** Service hostname when addressed through a service. */
  dstService?: string | undefined;
  /** "mutual_tls" when HBONE carried it, "none" otherwise. */
  security: "mutual_tls" | "none";
  /** Bytes from the source towards the destination. */
  bytesSent: number;
  /** Bytes from the destination back to the source. */
  bytesRecv: number;
  flag: ResponseFlag;
  /**
   * Dry-run policies that applied ("namespace/name", comma-separated) and what enforcing them
   * would have decided: set only when one did, for the access log and ztunnel_authz_dry_run_total.
   */
  dryRun?: { readonly policies: string; readonly decision: "allow" | "deny" } | undefined;
  /** Error code + message when the connection failed or was refused. */
  error?: { readonly code: ConnectionCode; readonly message: string } | undefined;
}

/**
 * Where a listed connection is (GET /debug/connections): "connecting" while its destination
 * is being dialled (the HBONE 200, the TCP connect), "open" once relayed, "half-closed" when
 * one direction has ended (a FIN one way), "draining" while the agent drains.
 */
export type ConnectionState = "connecting" | "open" | "half-closed" | "draining";

/** A connection as the admin lists it: a plain copy, its bytes read from the sockets when asked. */
export interface ConnectionSnapshot {
  readonly direction: Direction;
  readonly listener: ConnectionRecord["listener"];
  state: ConnectionState;
  readonly src: PeerInfo;
  readonly dst: PeerInfo;
  /** Service hostname when addressed through a service. */
  readonly service: string | null;
  /** "ip:15008" of the HBONE peer (outbound over HBONE). */
  readonly hboneAddr: string | null;
  readonly security: ConnectionRecord["security"];
  /** Bytes from the source towards the destination so far. */
  readonly bytesSent: number;
  /** Bytes from the destination back to the source so far. */
  readonly bytesRecv: number;
  readonly startMs: number;
}

/**
 * The agent's hook: `opened` once the destination is connected (counted as opened),
 * `closed` exactly once when the connection ends, whether it succeeded or failed.
 * A connection that never opened gets only `closed` with a flag other than "-".
 */
export interface ConnectionObserver {
  opened(rec: ConnectionRecord): void;
  closed(rec: ConnectionRecord): void;
  /**
   * A connection a listener reset at accept ("full": the listener or the data path holds all
   * the descriptors it may), or an unproven one it reset to make room ("evicted"). Counted,
   * not logged one by one.
   */
  dropped(listener: ConnectionRecord["listener"], reason: "full" | "evicted"): void;
}
