/**
 * zt-controller's delta xDS server (DeltaAggregatedResources): the store's workloads,
 * services and policies as `istio.workload.Address` and `istio.security.Authorization`,
 * the same data to every client. Resources are encoded once in the table (xds-table.ts)
 * and shared; each stream (xds-session.ts) gets the diff against what it holds, one
 * response in flight per type, changes coalescing meanwhile, and nothing more while its
 * stream asks to wait for a drain. One setImmediate per server batches the fan-out.
 *
 *   const xds = createXdsServer({ store, logger, authenticate });
 *   server.addService(ADS_SERVICE, xds.implementation);
 */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { DeltaRequest, DeltaResponse } from "@zt/istio";
import type { MeshStore } from "@zt/state";
import { typeLabel, xdsMetrics } from "./xds-metrics.js";
import { MIN_EXPLICIT_NAMES, NamesOverLimit, Session, TypeState, type ClientStatus } from "./xds-session.js";
import { createXdsTable, isXdsType, XDS_TYPES, type TableChange } from "./xds-table.js";

export type { ClientStatus, NackRecord, TypeStatus } from "./xds-session.js";

/** Who opened a stream, as `authenticate` says. */
export interface XdsCaller {
  /** For logs and status. */
  readonly name: string;
  /**
   * "<pod>.<namespace>" its token is bound to: the node id of its first request must name
   * it (`ztunnel~<ip>~<pod>.<namespace>~…`, PERMISSION_DENIED otherwise), and it may hold at
   * most `maxStreamsPerPod` streams. Absent: any node id, no per-pod limit (tests, benchmarks).
   */
  readonly pod?: string;
}

/**
 * A refusal from `authenticate`: the stream ends with `status`, the client told only an
 * opaque message, the log given `reason` and `code`. Any other rejection is UNAUTHENTICATED.
 */
export class XdsRefusal extends Error {
  constructor(
    readonly status: grpc.status.UNAUTHENTICATED | grpc.status.PERMISSION_DENIED | grpc.status.UNAVAILABLE,
    reason: string,
    readonly code: "XDS_CLIENT_UNAUTHENTICATED" | "XDS_CLIENT_FORBIDDEN" | "TOKEN_REVIEW_FAILED" = status === grpc.status.PERMISSION_DENIED ? "XDS_CLIENT_FORBIDDEN" : status === grpc.status.UNAVAILABLE ? "TOKEN_REVIEW_FAILED" : "XDS_CLIENT_UNAUTHENTICATED",
  ) {
    super(reason);
  }
}

/** What a refused client is told (the log says why). */
const OPAQUE: Record<XdsRefusal["status"], string> = {
  [grpc.status.UNAUTHENTICATED]: "authentication failed",
  [grpc.status.PERMISSION_DENIED]: "the caller may not read xDS as this node",
  [grpc.status.UNAVAILABLE]: "cannot authenticate the caller now; try again",
};

/** A client's NACK error_detail is kept (status, log) up to this many characters. */
export const MAX_NACK_DETAIL = 1024;

export interface XdsServerOptions {
  readonly store: MeshStore;
  readonly logger: Logger;
  /**
   * Who the caller is (required: there is no default that serves everyone). A rejection
   * ends the stream: an XdsRefusal with its status, anything else UNAUTHENTICATED.
   */
  readonly authenticate: (md: grpc.Metadata) => Promise<XdsCaller>;
  /** Where the metrics go (controller_xds_*); without one they are kept but not exported. */
  readonly registry?: Registry;
  /** Streams one caller pod may hold at once (default 2); one more ends RESOURCE_EXHAUSTED, the older ones kept. */
  readonly maxStreamsPerPod?: number;
  /** A stream whose first response of a type is neither ACKed nor NACKed within this (default 60 s) is ended DEADLINE_EXCEEDED. */
  readonly firstAckTimeoutMs?: number;
}

export interface XdsStats {
  readonly clients: number;
  readonly resources: Readonly<Record<string, number>>;
  /** Resources encoded since the start: one per workload, service or policy added or changed (never per client). */
  readonly encodes: number;
  readonly pushes: number;
  readonly resourcesSent: number;
  readonly nacks: number;
}

export interface XdsServer {
  readonly implementation: { DeltaAggregatedResources: grpc.handleBidiStreamingCall<DeltaRequest, DeltaResponse> };
  clients(): ClientStatus[];
  stats(): XdsStats;
  /** Ends every stream (UNAVAILABLE) and stops following the store. */
  close(): void;
}

type Call = grpc.ServerDuplexStream<DeltaRequest, DeltaResponse>;

export function createXdsServer(options: XdsServerOptions): XdsServer {
  const log = options.logger.child({ component: "xds" });
  const metrics = xdsMetrics(options.registry);
  const sessions = new Map<Session, Call>();
  const dirty = new Set<Session>();
  let scheduled: NodeJS.Immediate | null = null;
  let nonces = 0;
  let pushes = 0;
  let resourcesSent = 0;
  let nacks = 0;
  let closed = false;
  const maxPerPod = options.maxStreamsPerPod ?? 2;
  const firstAckTimeoutMs = options.firstAckTimeoutMs ?? 60_000;
  /** Per caller pod, its streams (oldest first). */
  const byPod = new Map<string, Set<Session>>();
  /** Streams waiting for `authenticate`: refused on close(). */
  const authenticating = new Set<(why: string) => void>();
  /** How each stream is ended by the server (a status to the client, then forgotten). */
  const enders = new Map<Session, (code: grpc.status, details: string, why: string) => void>();

  // One timer for the server: streams that never answered their first response of a type.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of [...sessions.keys()]) {
      for (const [type, t] of s.types) {
        if (t.firstUnanswered !== null && now - t.firstUnanswered > firstAckTimeoutMs) {
          log.warn({ code: "XDS_CLIENT_OVER_LIMIT", client: s.id, caller: s.caller, peer: s.peer, type }, `delta xDS client ${s.id} did not ACK or NACK its first ${typeLabel(type)} response within ${firstAckTimeoutMs} ms; stream ended`);
          enders.get(s)?.(grpc.status.DEADLINE_EXCEEDED, "the first response was not acknowledged in time", "no ACK of the first response");
          break;
        }
      }
    }
  }, Math.max(10, Math.min(5_000, Math.floor(firstAckTimeoutMs / 4))));
  sweep.unref();

  function onTableChange(changes: readonly TableChange[]): void {
    for (const s of sessions.keys()) {
      let touched = false;
      for (const c of changes) {
        const t = s.types.get(c.type);
        if (t) {
          t.changed(c.names);
          touched = true;
        }
      }
      if (touched) dirty.add(s);
    }
    schedule();
  }

  const table = createXdsTable(options.store, onTableChange, (type, name, err) =>
    log.error({ code: "XDS_RESOURCE_UNSERVABLE", type, name, err: err instanceof Error ? err.message : String(err) }, `${typeLabel(type)} ${name} cannot be encoded; not served`),
  );

  /** Unguessable (a client cannot ACK what it has not read) and unique on this server. */
  const newNonce = (): string => `${(++nonces).toString(36)}-${randomBytes(6).toString("base64url")}`;

  function wake(s: Session): void {
    dirty.add(s);
    schedule();
  }

  function schedule(): void {
    if (scheduled || dirty.size === 0 || closed) return;
    scheduled = setImmediate(flushAll);
  }

  function flushAll(): void {
    scheduled = null;
    const now = [...dirty];
    dirty.clear();
    for (const s of now) flush(s);
  }

  function flush(s: Session): void {
    s.flush(table, (type, resources) => {
      pushes++;
      resourcesSent += resources;
      metrics.pushes.inc({ type: typeLabel(type) });
      if (resources > 0) metrics.resourcesSent.inc({ type: typeLabel(type) }, resources);
    });
  }

  /** The pod a node id names: `ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`. */
  const podOfNodeId = (id: string): string | undefined => {
    const parts = id.split("~");
    return parts.length === 4 ? parts[2] : undefined;
  };

  /** False when the stream was ended. */
  function onRequest(s: Session, r: DeltaRequest): boolean {
    if (!s.named) {
      // The first request names the client (its node id); until then it is its peer address.
      s.named = true;
      const nodeId = r.node?.id ?? "";
      if (s.callerPod !== null && podOfNodeId(nodeId) !== s.callerPod) {
        log.warn({ code: "XDS_CLIENT_FORBIDDEN", caller: s.caller, peer: s.peer, nodeId }, `delta xDS stream from ${s.peer} refused: caller ${s.caller} (pod ${s.callerPod}) sent node id "${nodeId}", which names another pod`);
        enders.get(s)?.(grpc.status.PERMISSION_DENIED, OPAQUE[grpc.status.PERMISSION_DENIED], "node id names another pod");
        return false;
      }
      if (nodeId) s.id = nodeId;
      log.info({ client: s.id, caller: s.caller, peer: s.peer }, `delta xDS client ${s.id} connected`);
    }
    if (!isXdsType(r.type_url)) {
      log.debug({ client: s.id, type: r.type_url }, "delta xDS request for a type this server does not serve; ignored");
      return true;
    }
    let t = s.types.get(r.type_url);
    const nonce = r.response_nonce ?? "";
    // Explicit names are held per stream: at most this many per type.
    const maxNames = Math.max(MIN_EXPLICIT_NAMES, 2 * table.size(r.type_url));
    try {
      if (!t) {
        if (nonce !== "") {
          log.debug({ client: s.id, type: r.type_url, nonce }, "delta xDS ACK for a type not subscribed on this stream; ignored");
          return true;
        }
        s.types.set(r.type_url, (t = new TypeState(r, maxNames)));
        log.debug({ client: s.id, type: r.type_url, wildcard: t.wildcard, held: t.held.size }, "delta xDS subscription");
      } else if (nonce === "") {
        t.resubscribe(r, maxNames);
      } else if (nonce !== t.inFlight) {
        log.debug({ client: s.id, type: r.type_url, nonce, inFlight: t.inFlight }, "delta xDS response for an unknown or stale nonce; ignored");
        return true;
      } else {
        t.inFlight = null;
        t.firstUnanswered = null;
        const err = r.error_detail;
        if (err && (err.code !== 0 || err.message !== "")) {
          t.nacks++;
          nacks++;
          const detail = err.message.length > MAX_NACK_DETAIL ? `${err.message.slice(0, MAX_NACK_DETAIL)}… (${err.message.length} characters)` : err.message;
          t.lastNack = { nonce, code: err.code, message: detail, at: new Date().toISOString() };
          metrics.nacks.inc({ type: typeLabel(r.type_url) });
          log.warn({ code: "XDS_CLIENT_NACK", client: s.id, type: r.type_url, nonce, errorCode: err.code, detail }, `delta xDS client ${s.id} refused a response: ${detail}`);
        } else {
          t.lastNonceAcked = nonce;
        }
        t.resubscribe(r, maxNames);
      }
    } catch (e) {
      if (!(e instanceof NamesOverLimit)) throw e;
      log.warn({ code: "XDS_CLIENT_OVER_LIMIT", client: s.id, caller: s.caller, peer: s.peer, type: r.type_url, limit: e.limit }, `delta xDS client ${s.id} (caller ${s.caller}) subscribed more than ${e.limit} ${typeLabel(r.type_url)} names; stream ended`);
      enders.get(s)?.(grpc.status.RESOURCE_EXHAUSTED, `more than ${e.limit} resource names subscribed`, "too many names subscribed");
      return false;
    }
    flush(s);
    return true;
  }

  function handle(call: Call): void {
    const peer = call.getPeer();
    if (closed) {
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the xDS server is shutting down" });
      return;
    }
    const s = new Session(peer, { write: (res, written) => call.write(res, () => written()) }, newNonce, wake);
    const queued: DeltaRequest[] = [];
    let authenticated = false;
    let ended = false;

    const end = (why: string): void => {
      if (ended) return;
      ended = true;
      s.closed = true;
      dirty.delete(s);
      enders.delete(s);
      authenticating.delete(refuseClosed);
      if (s.callerPod !== null) {
        const mine = byPod.get(s.callerPod);
        mine?.delete(s);
        if (mine?.size === 0) byPod.delete(s.callerPod);
      }
      if (sessions.delete(s)) {
        metrics.clients.dec();
        log.info({ client: s.id, peer, why }, `delta xDS client ${s.id} disconnected`);
      }
    };
    /** Ends the stream from the server's side: the client gets `code` and `details`. */
    const refuse = (code: grpc.status, details: string, why: string): void => {
      if (ended) return;
      end(why);
      call.emit("error", { code, details });
    };
    const refuseClosed = (why: string): void => refuse(grpc.status.UNAVAILABLE, "the xDS server is shutting down", why);
    const start = (): void => {
      if (s.callerPod !== null) {
        let mine = byPod.get(s.callerPod);
        if (!mine) byPod.set(s.callerPod, (mine = new Set()));
        if (mine.size >= maxPerPod) {
          log.warn({ code: "XDS_CLIENT_OVER_LIMIT", caller: s.caller, pod: s.callerPod, peer, limit: maxPerPod }, `delta xDS stream from ${peer} refused: caller ${s.caller} already holds ${mine.size} streams (at most ${maxPerPod})`);
          refuse(grpc.status.RESOURCE_EXHAUSTED, `at most ${maxPerPod} xDS streams per caller`, "too many streams for its pod");
          return;
        }
        mine.add(s);
      }
      authenticated = true;
      sessions.set(s, call);
      enders.set(s, refuse);
      metrics.clients.inc();
      for (const r of queued.splice(0)) if (!onRequest(s, r)) return;
      call.resume();
    };

    call.on("data", (r: DeltaRequest) => {
      if (ended) return;
      if (!authenticated) queued.push(r);
      else onRequest(s, r);
    });
    call.on("drain", () => {
      s.blocked = false;
      if (!ended) flush(s);
    });
    call.on("end", () => {
      end("the client ended the stream");
      call.end();
    });
    call.on("cancelled", () => end("cancelled"));
    call.on("error", (e: { message?: string; details?: string }) => end(e.details ?? e.message ?? "error"));
    call.on("close", () => end("closed"));

    // Nothing read until the caller is known (what came already waits in `queued`).
    call.pause();
    authenticating.add(refuseClosed);
    let pending: Promise<XdsCaller>;
    try {
      pending = options.authenticate(call.metadata);
    } catch (e) {
      pending = Promise.reject(e);
    }
    pending.then(
      (caller) => {
        authenticating.delete(refuseClosed);
        if (ended) return;
        if (closed) return refuseClosed("the server closed during authentication");
        s.caller = caller.name;
        s.callerPod = caller.pod ?? null;
        start();
      },
      (e: unknown) => {
        authenticating.delete(refuseClosed);
        if (ended) return;
        if (closed) return refuseClosed("the server closed during authentication");
        const status = e instanceof XdsRefusal ? e.status : grpc.status.UNAUTHENTICATED;
        const code = e instanceof XdsRefusal ? e.code : "XDS_CLIENT_UNAUTHENTICATED";
        const message = e instanceof Error ? e.message : String(e);
        const level = status === grpc.status.UNAVAILABLE ? "error" : "warn";
        log[level]({ code, peer, status: grpc.status[status], err: message }, `delta xDS stream from ${peer} refused: ${message}`);
        refuse(status, OPAQUE[status as XdsRefusal["status"]] ?? OPAQUE[grpc.status.UNAUTHENTICATED], code === "TOKEN_REVIEW_FAILED" ? "authentication unavailable" : "refused by authentication");
      },
    );
  }

  return {
    implementation: { DeltaAggregatedResources: handle },
    clients: () => [...sessions.keys()].map((s) => s.status()),
    stats: () => ({
      clients: sessions.size,
      resources: Object.fromEntries(XDS_TYPES.map((t) => [t, table.size(t)])),
      encodes: table.encodes,
      pushes,
      resourcesSent,
      nacks,
    }),
    close(): void {
      if (closed) return;
      closed = true;
      clearInterval(sweep);
      table.close();
      for (const refuseNow of [...authenticating]) refuseNow("the server closed during authentication");
      authenticating.clear();
      if (scheduled) clearImmediate(scheduled);
      scheduled = null;
      for (const [s, call] of [...sessions]) {
        s.closed = true;
        call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the xDS server is shutting down" });
      }
    },
  };
}
