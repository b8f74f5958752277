/**
 * zt-controller's delta xDS server (DeltaAggregatedResources): the store's workloads,
 * services and policies as `istio.workload.Address` and `istio.security.Authorization`,
 * the same data to every client. Resources are encoded once in the table (xds-table.ts)
 * and shared; each stream (xds-session.ts) gets the diff against what it holds, one
 * response in flight per type, changes coalescing meanwhile, and nothing more while its
 * stream asks to wait for a drain. One setImmediate per server batches the fan-out.
 *
 *   const xds = createXdsServer({ store, logger });
 *   server.addService(ADS_SERVICE, xds.implementation);
 */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { DeltaRequest, DeltaResponse } from "@zt/istio";
import type { MeshStore } from "@zt/state";
import { typeLabel, xdsMetrics } from "./xds-metrics.js";
import { Session, TypeState, type ClientStatus } from "./xds-session.js";
import { createXdsTable, isXdsType, XDS_TYPES, type TableChange } from "./xds-table.js";

export type { ClientStatus, NackRecord, TypeStatus } from "./xds-session.js";

export interface XdsServerOptions {
  readonly store: MeshStore;
  readonly logger: Logger;
  /** The caller's name for logs; a rejection (any error) ends the stream UNAUTHENTICATED. */
  readonly authenticate?: (md: grpc.Metadata) => Promise<string>;
  /** Where the metrics go (controller_xds_*); without one they are kept but not exported. */
  readonly registry?: Registry;
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

  function onRequest(s: Session, r: DeltaRequest): void {
    if (!s.named) {
      // The first request names the client (its node id); until then it is its peer address.
      s.named = true;
      if (r.node?.id) s.id = r.node.id;
      log.info({ client: s.id, caller: s.caller, peer: s.peer }, `delta xDS client ${s.id} connected`);
    }
    if (!isXdsType(r.type_url)) {
      log.debug({ client: s.id, type: r.type_url }, "delta xDS request for a type this server does not serve; ignored");
      return;
    }
    let t = s.types.get(r.type_url);
    const nonce = r.response_nonce ?? "";
    if (!t) {
      if (nonce !== "") {
        log.debug({ client: s.id, type: r.type_url, nonce }, "delta xDS ACK for a type not subscribed on this stream; ignored");
        return;
      }
      s.types.set(r.type_url, (t = new TypeState(r)));
      log.debug({ client: s.id, type: r.type_url, wildcard: t.wildcard, held: t.held.size }, "delta xDS subscription");
    } else if (nonce === "") {
      t.resubscribe(r);
    } else if (nonce !== t.inFlight) {
      log.debug({ client: s.id, type: r.type_url, nonce, inFlight: t.inFlight }, "delta xDS response for an unknown or stale nonce; ignored");
      return;
    } else {
      t.inFlight = null;
      const err = r.error_detail;
      if (err && (err.code !== 0 || err.message !== "")) {
        t.nacks++;
        nacks++;
        t.lastNack = { nonce, code: err.code, message: err.message, at: new Date().toISOString() };
        metrics.nacks.inc({ type: typeLabel(r.type_url) });
        log.warn({ code: "XDS_CLIENT_NACK", client: s.id, type: r.type_url, nonce, errorCode: err.code, detail: err.message }, `delta xDS client ${s.id} refused a response: ${err.message}`);
      } else {
        t.lastNonceAcked = nonce;
      }
      t.resubscribe(r);
    }
    flush(s);
  }

  function handle(call: Call): void {
    const peer = call.getPeer();
    if (closed) {
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the xDS server is shutting down" });
      return;
    }
    const s = new Session(peer, { write: (res, written) => call.write(res, () => written()) }, newNonce, wake);
    const queued: DeltaRequest[] = [];
    let authenticated = options.authenticate === undefined;
    let ended = false;

    const end = (why: string): void => {
      if (ended) return;
      ended = true;
      s.closed = true;
      dirty.delete(s);
      if (sessions.delete(s)) {
        metrics.clients.dec();
        log.info({ client: s.id, peer, why }, `delta xDS client ${s.id} disconnected`);
      }
    };
    const start = (): void => {
      authenticated = true;
      sessions.set(s, call);
      metrics.clients.inc();
      for (const r of queued.splice(0)) onRequest(s, r);
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

    if (options.authenticate) {
      // Nothing read until the caller is known (what came already waits in `queued`).
      call.pause();
      options.authenticate(call.metadata).then(
        (caller) => {
          if (ended) return;
          s.caller = caller;
          start();
        },
        (e: unknown) => {
          if (ended) return;
          const message = e instanceof Error ? e.message : String(e);
          log.warn({ code: "XDS_CLIENT_UNAUTHENTICATED", peer, err: message }, `delta xDS stream from ${peer} refused: ${message}`);
          end("unauthenticated");
          call.emit("error", { code: grpc.status.UNAUTHENTICATED, details: message });
        },
      );
    } else {
      start();
    }
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
      table.close();
      if (scheduled) clearImmediate(scheduled);
      scheduled = null;
      for (const [s, call] of [...sessions]) {
        s.closed = true;
        call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the xDS server is shutting down" });
      }
    },
  };
}
