/**
 * One client's delta xDS stream: per type, what it subscribed to, the versions it holds
 * (as sent: an ACK confirms them, a NACK keeps them, since which ones it refused cannot
 * be known), the names changed since the last response, and the one response in flight.
 * `flush()` sends a type's diff when nothing of that type is in flight and the stream is
 * not waiting for a drain; the server calls it after table changes, ACKs and drains.
 */
import { ADDRESS_TYPE, AUTHORIZATION_TYPE, type DeltaRequest, type DeltaResponse, type XdsResource } from "@zt/istio";
import type { XdsTable, XdsType } from "./xds-table.js";

/**
 * The order a flush sends the types in: policies before addresses, whatever order the
 * client subscribed in (the agent subscribes Address first). A workload's new
 * `authorization_policies` list may name a policy that is new in the same change; sent
 * the other way round, the client would hold a workload naming a policy it does not have yet.
 */
const SEND_ORDER: readonly XdsType[] = [AUTHORIZATION_TYPE, ADDRESS_TYPE];

/** At least this many explicit names per type may be subscribed (more: twice the table's size for that type). */
export const MIN_EXPLICIT_NAMES = 10_000;

/** More changed names than this at once and the next response diffs the whole table instead. */
const FULL_DIFF_OVER = 1000;

export interface NackRecord {
  readonly nonce: string;
  readonly code: number;
  readonly message: string;
  readonly at: string;
}

export interface TypeStatus {
  readonly wildcard: boolean;
  readonly resources: number;
  readonly lastNonceSent: string | null;
  readonly lastNonceAcked: string | null;
  readonly inFlight: boolean;
  readonly nacks: number;
  readonly lastNack: NackRecord | null;
}

export interface ClientStatus {
  readonly id: string;
  readonly caller: string | null;
  readonly peer: string;
  readonly connectedSince: string;
  readonly types: Readonly<Record<string, TypeStatus>>;
}

export class TypeState {
  wildcard = true;
  /** Explicit names, when not a wildcard subscription. */
  readonly names = new Set<string>();
  readonly held = new Map<string, string>();
  pending = new Set<string>();
  full = true;
  firstSent = false;
  inFlight: string | null = null;
  /**
   * Its last response is written but has not yet gone to the connection: the next one waits,
   * so a connection that takes no more bytes never has more than one response per type queued,
   * even were its client to ACK a nonce it has not read.
   */
  unwritten = false;
  lastNonceSent: string | null = null;
  lastNonceAcked: string | null = null;
  nacks = 0;
  lastNack: NackRecord | null = null;

  /** Since when (ms) its first response waits for an ACK or NACK; null once answered, or before it is sent. */
  firstUnanswered: number | null = null;

  /** Throws NamesOverLimit when it asks for more than `maxNames` explicit names. */
  constructor(request: DeltaRequest, maxNames = Infinity) {
    const subscribe = request.resource_names_subscribe ?? [];
    if (subscribe.length > 0 && !subscribe.includes("*")) {
      this.wildcard = false;
      for (const n of subscribe) {
        if (!this.names.has(n) && this.names.size >= maxNames) throw new NamesOverLimit(maxNames);
        this.names.add(n);
      }
    }
    for (const [name, version] of Object.entries(request.initial_resource_versions ?? {})) this.held.set(name, version);
  }

  wants(name: string): boolean {
    return this.wildcard || this.names.has(name);
  }

  changed(names: readonly string[]): void {
    if (this.full) return;
    if (this.pending.size + names.length > FULL_DIFF_OVER) {
      this.full = true;
      this.pending = new Set();
      return;
    }
    for (const n of names) this.pending.add(n);
  }

  /**
   * Subscription changes after the first request (explicit names; a wildcard ignores them,
   * and "*" again when already a wildcard changes nothing). Throws NamesOverLimit when the
   * explicit names would be more than `maxNames`.
   */
  resubscribe(request: DeltaRequest, maxNames = Infinity): void {
    for (const n of request.resource_names_subscribe ?? []) {
      if (n === "*") {
        if (this.wildcard) continue;
        this.wildcard = true;
        this.full = true;
      } else if (!this.wildcard && !this.names.has(n)) {
        if (this.names.size >= maxNames) throw new NamesOverLimit(maxNames);
        this.names.add(n);
        this.changed([n]);
      }
    }
    for (const n of request.resource_names_unsubscribe ?? []) {
      if (this.wildcard) continue;
      this.names.delete(n);
      this.held.delete(n);
      this.pending.delete(n);
    }
  }

  /** The diff between what the client holds and the table, for the names to look at; held is updated as sent. */
  diff(type: XdsType, table: XdsTable): { resources: XdsResource[]; removed: string[] } {
    const resources: XdsResource[] = [];
    const removed: string[] = [];
    const look = (name: string): void => {
      const r = this.wants(name) ? table.get(type, name) : undefined;
      if (r) {
        if (this.held.get(name) !== r.version) {
          resources.push(r);
          this.held.set(name, r.version);
        }
      } else if (this.held.has(name)) {
        removed.push(name);
        this.held.delete(name);
      }
    };
    if (this.full) {
      if (this.wildcard) for (const name of table.names(type)) look(name);
      else for (const name of this.names) look(name);
      for (const name of [...this.held.keys()]) if (!this.wants(name) || !table.get(type, name)) look(name);
    } else {
      for (const name of this.pending) look(name);
    }
    this.full = false;
    this.pending = new Set();
    return { resources, removed };
  }

  status(): TypeStatus {
    return {
      wildcard: this.wildcard,
      resources: this.held.size,
      lastNonceSent: this.lastNonceSent,
      lastNonceAcked: this.lastNonceAcked,
      inFlight: this.inFlight !== null,
      nacks: this.nacks,
      lastNack: this.lastNack,
    };
  }
}

/** A subscription asked for more explicit names than a stream may hold. */
export class NamesOverLimit extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} explicit resource names subscribed`);
  }
}

export interface SessionSink {
  /** Writes one response; false when the stream asks to wait for a drain. `written` once it has gone to the connection. */
  write(response: DeltaResponse, written: () => void): boolean;
}



export class Session {
  id: string;
  caller: string | null = null;
  /** Its first request came (and gave its id). */
  named = false;
  readonly connectedSince = new Date().toISOString();
  readonly types = new Map<XdsType, TypeState>();
  /** Waiting for `drain`. */
  blocked = false;
  /** A flush left a type for its unwritten response; the server is told when one is written. */
  heldBack = false;
  closed = false;
  /** "<pod>.<namespace>" the caller's token is bound to, when its authentication says. */
  callerPod: string | null = null;

  constructor(
    readonly peer: string,
    private readonly sink: SessionSink,
    private readonly nextNonce: () => string,
    private readonly writable: (s: Session) => void,
  ) {
    this.id = peer;
  }

  /** Sends what is due for each type; `sent` is told of each response. */
  flush(table: XdsTable, sent: (type: XdsType, resources: number, removed: number) => void): void {
    for (const type of SEND_ORDER) {
      const t = this.types.get(type);
      if (!t) continue;
      if (this.closed || this.blocked) return;
      if (t.inFlight !== null || (t.firstSent && !t.full && t.pending.size === 0)) continue;
      if (t.unwritten) {
        this.heldBack = true;
        continue;
      }
      const { resources, removed } = t.diff(type, table);
      if (t.firstSent && resources.length === 0 && removed.length === 0) continue;
      const nonce = this.nextNonce();
      if (!t.firstSent) t.firstUnanswered = Date.now();
      t.firstSent = true;
      t.inFlight = nonce;
      t.lastNonceSent = nonce;
      t.unwritten = true;
      const more = this.sink.write({ type_url: type, nonce, resources, removed_resources: removed }, () => {
        t.unwritten = false;
        if (this.heldBack && !this.closed) {
          this.heldBack = false;
          this.writable(this);
        }
      });
      if (!more) this.blocked = true;
      sent(type, resources.length, removed.length);
    }
  }

  status(): ClientStatus {
    return {
      id: this.id,
      caller: this.caller,
      peer: this.peer,
      connectedSince: this.connectedSince,
      types: Object.fromEntries([...this.types].map(([type, t]) => [type, t.status()])),
    };
  }
}
