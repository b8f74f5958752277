/**
 * `GET /debug/connections`: every proxied connection the workers hold (open, half-closed,
 * draining, or still connecting), as one JSON document streamed page by page: the main thread
 * asks each worker for CONNECTION_PAGE_SIZE at a time and writes each page as it comes,
 * waiting for the client to read ('drain') before asking for the next. However many
 * connections there are, nothing holds more than one page.
 */
import type http from "node:http";
import type { ConnectionSnapshot, PeerInfo } from "@zt/proxy";
import { CONNECTION_PAGE_SIZE, type ConnectionFilter, type ConnectionPage, type ConnectionPageRequest } from "./connection-pages.js";

export const CONNECTIONS_DEFAULT_LIMIT = 10_000;
export const CONNECTIONS_MAX_LIMIT = 100_000;

/** The workers' connections, page by page (the main thread's side of the worker protocol). */
export interface ConnectionSource {
  /** How many workers to ask (numbered from 0). */
  workers(): number;
  /** A page of one worker's connections; undefined when it did not answer. */
  page(worker: number, req: ConnectionPageRequest): Promise<ConnectionPage | undefined>;
}

export interface ConnectionQuery extends ConnectionFilter {
  readonly limit: number;
}

const PARAMS = ["limit", "direction", "namespace"];

/** The query of /debug/connections, or why it is refused (answered 400), in the shape explain-query.ts answers. */
export function parseConnectionQuery(params: URLSearchParams): ConnectionQuery | { error: string } {
  for (const k of new Set(params.keys())) {
    if (!PARAMS.includes(k)) return { error: `unknown parameter ${JSON.stringify(k.slice(0, 64))}: /debug/connections takes ${PARAMS.join(", ")}` };
    if (params.getAll(k).length > 1) return { error: `parameter ${k} given more than once` };
  }
  let limit = CONNECTIONS_DEFAULT_LIMIT;
  const rawLimit = params.get("limit");
  if (rawLimit !== null) {
    if (!/^\d{1,9}$/.test(rawLimit) || Number(rawLimit) < 1 || Number(rawLimit) > CONNECTIONS_MAX_LIMIT) {
      return { error: `invalid limit ${JSON.stringify(rawLimit.slice(0, 64))}: expected a whole number from 1 to ${CONNECTIONS_MAX_LIMIT} (default ${CONNECTIONS_DEFAULT_LIMIT})` };
    }
    limit = Number(rawLimit);
  }
  const direction = params.get("direction");
  if (direction !== null && direction !== "inbound" && direction !== "outbound") {
    return { error: `invalid direction ${JSON.stringify(direction.slice(0, 64))}: expected inbound or outbound` };
  }
  const namespace = params.get("namespace");
  if (namespace === "") return { error: "invalid namespace \"\": name one, or leave the parameter out" };
  return { limit, ...(direction !== null ? { direction } : {}), ...(namespace !== null ? { namespace } : {}) };
}

let listings = 0;

/**
 * Write the listing to `res` (200, JSON): `{node, time, limit, filters, connections: [...],
 * count, truncated, held, unanswered}`. Stops early, quietly, when the client goes away.
 */
export async function streamConnections(res: http.ServerResponse, source: ConnectionSource, q: ConnectionQuery, node: string): Promise<void> {
  const listing = ++listings;
  const gone = (): boolean => res.destroyed;
  const write = async (s: string): Promise<void> => {
    if (!res.write(s) && !res.destroyed) await drained(res);
  };
  res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
  const head = { node, time: new Date().toISOString(), limit: q.limit, filters: { direction: q.direction ?? null, namespace: q.namespace ?? null } };
  await write(`${JSON.stringify(head).slice(0, -1)},"connections":[`);
  let count = 0;
  let held = 0;
  let truncated = false;
  const unanswered: number[] = [];
  const filter: ConnectionFilter = { ...(q.direction ? { direction: q.direction } : {}), ...(q.namespace !== undefined ? { namespace: q.namespace } : {}) };
  for (let worker = 0; worker < source.workers(); worker++) {
    for (let offset = 0, first = true; ; first = false) {
      if (gone()) return;
      // Past the limit, the rest of the workers are only asked what they hold (an empty page).
      const left = truncated ? 0 : q.limit - count;
      const page = await source.page(worker, { ...filter, listing, offset, limit: Math.min(CONNECTION_PAGE_SIZE, left), final: left <= CONNECTION_PAGE_SIZE });
      if (gone()) return;
      if (!page) {
        unanswered.push(worker);
        break;
      }
      if (first) held += page.held;
      if (truncated) break;
      if (page.items.length > 0) {
        const now = Date.now();
        await write(`${count === 0 ? "\n" : ",\n"}${page.items.map((s) => JSON.stringify(render(s, worker, now))).join(",\n")}`);
        count += page.items.length;
        offset += page.items.length;
      }
      if (!page.more) break;
      if (count >= q.limit) {
        truncated = true;
        break;
      }
    }
  }
  if (gone()) return;
  res.end(`${count === 0 ? "" : "\n"}],"count":${count},"truncated":${truncated},"held":${held},"unanswered":${JSON.stringify(unanswered)}}\n`);
}

/** One connection as listed: addresses and names of both sides, bytes so far, age. */
function render(s: ConnectionSnapshot, worker: number, now: number): object {
  return {
    worker,
    direction: s.direction,
    listener: s.listener,
    state: s.state,
    src: peer(s.src),
    dst: { ...peer(s.dst), service: s.service, hboneAddr: s.hboneAddr },
    security: s.security,
    bytesSent: s.bytesSent,
    bytesRecv: s.bytesRecv,
    startTime: new Date(s.startMs).toISOString(),
    ageMs: Math.max(0, now - s.startMs),
  };
}

function peer(p: PeerInfo): object {
  return { addr: p.addr, workload: p.workload ?? null, namespace: p.namespace ?? null, identity: p.identity ?? null };
}

/** The client read what was buffered, or went away. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
