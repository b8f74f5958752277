/**
 * A delta ADS client: one gRPC bidi stream (DeltaAggregatedResources) over TLS, wildcard
 * subscriptions to the types it is given, every response ACKed or NACKed. The caller's
 * per-type handler decodes each resource (throwing to refuse it) and applies a whole
 * response's good resources at once; the client keeps the version of each applied
 * resource, per type, and sends them as `initial_resource_versions` on reconnect.
 * A stream that ends or fails is reopened after a capped, jittered exponential backoff;
 * nothing is removed until the server says so.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { ZtError } from "@zt/errors";
import { callMetadata, tlsNameOptions } from "./grpc-call.js";
import { ADS_SERVICE } from "./grpc.js";
import type { DeltaRequest, DeltaResponse, XdsNode } from "./messages.js";

export interface XdsTypeHandler<T> {
  /** One resource's body to the caller's value; throws (a ZtError's message is the reason) to refuse it. */
  decode(name: string, body: Uint8Array): T;
  /** One response's accepted resources and removals (of names applied before), applied together. */
  apply(upserts: ReadonlyMap<string, T>, removed: readonly string[]): void;
}

export interface XdsLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface XdsNodeInfo {
  readonly ip: string;
  readonly podName: string;
  readonly podNamespace: string;
  readonly nodeName: string;
  readonly clusterId: string;
}

export interface XdsClientOptions {
  /** host:port */
  readonly address: string;
  /** PEM file of the roots that sign the server's certificate. */
  readonly rootCaFile: string;
  /** The name the server's certificate is checked against, when not the host of `address`. */
  readonly altHostname?: string | undefined;
  /** Read at each (re)connect: a projected token is rotated on disk. */
  readonly tokenFile: string;
  readonly node: XdsNodeInfo;
  /** By type URL, in the order of the initial requests. */
  readonly types: ReadonlyMap<string, XdsTypeHandler<unknown>>;
  readonly logger: XdsLogger;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Called once, when every type has been ACKed once. */
  readonly onSynced?: () => void;
}

export type XdsConnectionState = "connecting" | "connected" | "backoff" | "closed";

export interface XdsErrorInfo {
  readonly code: string;
  readonly message: string;
  readonly at: string;
}

export interface XdsTypeStatus {
  /**
   * A response of this type has been applied, wholly or but for the resources it refused:
   * the agent serves what the server sent. (Waiting for a full ACK instead would keep every
   * agent unready for as long as one resource in the mesh cannot be served here, a waypoint say.)
   */
  readonly synced: boolean;
  readonly ackedOnce: boolean;
  readonly lastAckedNonce: string | null;
  readonly resources: number;
  readonly lastNack: { readonly nonce: string; readonly detail: string; readonly at: string } | null;
}

export interface XdsClientStatus {
  readonly address: string;
  readonly state: XdsConnectionState;
  readonly since: string;
  readonly lastError: XdsErrorInfo | null;
  readonly reconnects: number;
  /** Removals of names this client never applied (ignored). */
  readonly ignoredRemovals: number;
  /** Responses of a type this client did not subscribe to (NACKed, nothing applied). */
  readonly unknownTypeResponses: number;
  readonly types: Readonly<Record<string, XdsTypeStatus>>;
}

export interface XdsClient {
  status(): XdsClientStatus;
  /** What readiness still waits for: each type not yet ACKed once. */
  pending(): string[];
  close(): void;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A whole mesh's first Address response exceeds grpc-js's 4 MiB default.
  "grpc.max_receive_message_length": 256 * 1024 * 1024,
  // Pings find a server whose host vanished without a reset (istiod permits one every 15 s).
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
};

/** google.rpc.Code INVALID_ARGUMENT: what a NACK's error_detail carries. */
const INVALID_ARGUMENT = 3;

export function xdsNode(n: XdsNodeInfo): XdsNode {
  return {
    id: `ztunnel~${n.ip}~${n.podName}.${n.podNamespace}~${n.podNamespace}.svc.cluster.local`,
    metadata: { NAME: n.podName, NAMESPACE: n.podNamespace, INSTANCE_IPS: n.ip, NODE_NAME: n.nodeName, CLUSTER_ID: n.clusterId },
  };
}

type Call = grpc.ClientDuplexStream<DeltaRequest, DeltaResponse>;

interface TypeState {
  readonly handler: XdsTypeHandler<unknown>;
  /** Of the applied resources only. */
  readonly versions: Map<string, string>;
  synced: boolean;
  ackedOnce: boolean;
  lastAckedNonce: string | null;
  lastNack: XdsTypeStatus["lastNack"];
}

export function startXdsClient(o: XdsClientOptions): XdsClient {
  const log = o.logger;
  const backoff = o.backoff ?? { initialMs: 500, maxMs: 30_000 };
  const node = xdsNode(o.node);
  const types = new Map<string, TypeState>([...o.types].map(([url, handler]) => [url, { handler, versions: new Map(), synced: false, ackedOnce: false, lastAckedNonce: null, lastNack: null }]));
  let state: XdsConnectionState = "connecting";
  let since = new Date().toISOString();
  let lastError: XdsErrorInfo | null = null;
  let loggedError = "";
  let reconnects = 0;
  let ignoredRemovals = 0;
  let unknownTypeResponses = 0;
  let attempt = 0;
  let client: grpc.Client | undefined;
  let call: Call | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const setState = (s: XdsConnectionState): void => {
    if (s === state) return;
    state = s;
    since = new Date().toISOString();
  };

  const fail = (code: string, message: string): void => {
    lastError = { code, message, at: new Date().toISOString() };
    // Once per distinct message: a server down for an hour is one line, not one per retry.
    if (message !== loggedError) log[code === "XDS_REFUSED" ? "error" : "warn"]({ code, address: o.address }, message);
    else log.debug({ code, address: o.address }, message);
    loggedError = message;
  };

  const connect = (): void => {
    timer = undefined;
    if (closed) return;
    setState("connecting");
    let token: string;
    let root: Buffer;
    try {
      root = readFileSync(o.rootCaFile);
    } catch (err) {
      fail("XDS_UNREACHABLE", `cannot read the xDS root certificate ${o.rootCaFile} (XDS_ROOT_CA): ${(err as Error).message}`);
      return retry();
    }
    try {
      token = readFileSync(o.tokenFile, "utf8").trim();
    } catch (err) {
      fail("XDS_REFUSED", `cannot read the token for the xDS server ${o.tokenFile} (AUTH_TOKEN): ${(err as Error).message}`);
      return retry();
    }
    const options: grpc.ChannelOptions = {
      ...CHANNEL_OPTIONS,
      ...tlsNameOptions(o.altHostname),
    };
    client = new grpc.Client(o.address, grpc.credentials.createSsl(root), options);
    const md = callMetadata(token, o.node.clusterId);
    const m = ADS_SERVICE.DeltaAggregatedResources;
    const c: Call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, md);
    call = c;
    let answered = false;
    c.on("metadata", () => {
      if (call === c) setState("connected");
    });
    c.on("data", (r: DeltaResponse) => {
      if (call !== c) return;
      if (!answered) {
        answered = true;
        attempt = 0;
        setState("connected");
        if (loggedError !== "") log.info({ address: o.address }, `xDS server ${o.address} answering again`);
        loggedError = "";
      }
      onResponse(c, r);
    });
    // Every call ends with exactly one status; "error" repeats it for a non-OK one.
    c.on("error", () => undefined);
    c.on("status", (s: grpc.StatusObject) => {
      if (call !== c) return;
      call = undefined;
      if (closed) return;
      if (s.code === grpc.status.OK) log.info({ address: o.address }, `the xDS server ${o.address} ended the stream; reconnecting`);
      else fail(errorCode(s.code), `xDS stream to ${o.address} failed: ${grpc.status[s.code] ?? s.code}: ${s.details}`);
      retry();
    });
    for (const [url, t] of types) c.write({ node, type_url: url, resource_names_subscribe: [], initial_resource_versions: Object.fromEntries(t.versions) });
  };

  const retry = (): void => {
    client?.close();
    client = undefined;
    if (closed) return;
    const cap = Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt);
    attempt++;
    reconnects++;
    setState("backoff");
    // Half fixed, half random: agents restarted together do not come back together.
    timer = setTimeout(connect, cap / 2 + Math.random() * (cap / 2));
  };

  const onResponse = (c: Call, r: DeltaResponse): void => {
    const t = types.get(r.type_url);
    if (!t) {
      unknownTypeResponses++;
      const detail = `type ${JSON.stringify(r.type_url)} was not subscribed to (this client follows ${[...types.keys()].join(", ")})`;
      log.warn({ code: "XDS_PROTOCOL_ERROR", typeUrl: r.type_url, nonce: r.nonce }, `xDS response NACKed: ${detail}`);
      c.write({ type_url: r.type_url, response_nonce: r.nonce, error_detail: { code: INVALID_ARGUMENT, message: detail } });
      return;
    }
    const refused = new Map<string, string>();
    const upserts = new Map<string, unknown>();
    const versions = new Map<string, string>();
    const seen = new Set<string>();
    for (const res of r.resources) {
      if (seen.has(res.name)) {
        upserts.delete(res.name);
        versions.delete(res.name);
        refused.set(res.name, "named more than once in one response");
        continue;
      }
      seen.add(res.name);
      const reason = check(res.resource?.type_url, res.resource?.value, r.type_url);
      if (reason !== undefined) {
        refused.set(res.name, reason);
        continue;
      }
      try {
        upserts.set(res.name, t.handler.decode(res.name, res.resource!.value));
        versions.set(res.name, res.version);
      } catch (err) {
        refused.set(res.name, err instanceof ZtError ? err.message : `does not decode: ${(err as Error).message}`);
      }
    }
    const removed: string[] = [];
    for (const name of r.removed_resources) {
      if (t.versions.has(name)) removed.push(name);
      else ignoredRemovals++;
    }
    try {
      t.handler.apply(upserts, removed);
    } catch (err) {
      // A handler that cannot apply at all: nothing of this response is kept.
      for (const name of upserts.keys()) refused.set(name, `not applied: ${(err as Error).message}`);
      upserts.clear();
      versions.clear();
      removed.length = 0;
    }
    for (const name of removed) t.versions.delete(name);
    for (const [name, v] of versions) t.versions.set(name, v);
    const firstSync = !t.synced;
    t.synced = true;
    const allSynced = firstSync && [...types.values()].every((x) => x.synced);
    if (refused.size === 0) {
      const first = !t.ackedOnce;
      t.ackedOnce = true;
      t.lastAckedNonce = r.nonce;
      c.write({ type_url: r.type_url, response_nonce: r.nonce });
      const counts = { typeUrl: r.type_url, nonce: r.nonce, applied: upserts.size, removed: removed.length, resources: t.versions.size };
      if (first) log.info(counts, `first xDS response of ${r.type_url} applied`);
      else log.debug(counts, "xDS response applied");
      if (allSynced) o.onSynced?.();
      return;
    }
    const detail = [...refused].map(([name, why]) => `${name}: ${why}`).join("; ");
    const message = `refused ${refused.size} of ${r.resources.length} resource(s): ${detail}`;
    t.lastNack = { nonce: r.nonce, detail: message, at: new Date().toISOString() };
    c.write({ type_url: r.type_url, response_nonce: r.nonce, error_detail: { code: INVALID_ARGUMENT, message } });
    log.warn(
      { code: "XDS_RESOURCE_INVALID", typeUrl: r.type_url, nonce: r.nonce, refused: [...refused.keys()], applied: upserts.size, removed: removed.length },
      `xDS response NACKed, the rest applied: ${message}`,
    );
    if (allSynced) o.onSynced?.();
  };

  connect();

  return {
    status: () => ({
      address: o.address,
      state,
      since,
      lastError,
      reconnects,
      ignoredRemovals,
      unknownTypeResponses,
      types: Object.fromEntries([...types].map(([url, t]) => [url, { synced: t.synced, ackedOnce: t.ackedOnce, lastAckedNonce: t.lastAckedNonce, resources: t.versions.size, lastNack: t.lastNack }])),
    }),
    pending: () => {
      const why = lastError && state !== "connected" ? ` (${lastError.code}: ${lastError.message})` : "";
      return [...types].filter(([, t]) => !t.synced).map(([url]) => `waiting for the first xDS response of ${url}${why}`);
    },
    close: () => {
      closed = true;
      setState("closed");
      if (timer) clearTimeout(timer);
      const c = call;
      call = undefined;
      c?.cancel();
      client?.close();
    },
  };
}

/** Why a resource cannot be decoded as the response's type, or undefined. */
function check(anyType: string | undefined, body: Uint8Array | undefined, responseType: string): string | undefined {
  if (anyType === undefined || body === undefined) return "has no body";
  if (anyType !== responseType) return `is a ${JSON.stringify(anyType)}, not the response's ${responseType}`;
  return undefined;
}

function errorCode(code: grpc.status): string {
  if (code === grpc.status.UNAUTHENTICATED || code === grpc.status.PERMISSION_DENIED) return "XDS_REFUSED";
  if (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.CANCELLED) return "XDS_UNREACHABLE";
  return "XDS_PROTOCOL_ERROR";
}
