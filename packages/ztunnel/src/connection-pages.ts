/**
 * A data path's open connections, one page at a time, for `GET /debug/connections`: the
 * main thread asks each worker for pages (offset, limit, filters) and streams them out, so a
 * huge number of connections is never one giant message or one giant string. Nothing here
 * runs per connection or per chunk: snapshots are taken when a page is asked for.
 */
import { snapshotOf, type ConnectionRecord, type ConnectionSnapshot, type Direction, type LiveConnection } from "@zt/proxy";

/** Connections per page asked of a worker. */
export const CONNECTION_PAGE_SIZE = 500;

export interface ConnectionFilter {
  readonly direction?: Direction | undefined;
  /** Source or destination in this namespace. */
  readonly namespace?: string | undefined;
}

export interface ConnectionPageRequest extends ConnectionFilter {
  /** One listing (one HTTP request): the worker continues where its previous page ended. */
  readonly listing: number;
  /** Matching connections to skip. */
  readonly offset: number;
  /** At most this many (0: only whether any is left). */
  readonly limit: number;
  /** The listing asks this worker nothing more after this page: keep no cursor for it. */
  readonly final?: boolean | undefined;
}

export interface ConnectionPage {
  readonly items: ConnectionSnapshot[];
  /** More match after these. */
  readonly more: boolean;
  /** Every connection the worker holds, open or connecting, before filters. */
  readonly held: number;
}

type Held = LiveConnection | ConnectionRecord;

interface Cursor {
  readonly listing: number;
  /** The offset the next page of this listing starts at. */
  next: number;
  readonly it: Iterator<Held>;
  /** Read ahead to answer `more`; emitted first by the next page. */
  peeked: Held | undefined;
}

/** Listings followed at once; an older one asked again starts over from its offset. */
const MAX_CURSORS = 4;

/**
 * Pages over the live set, then the connections still dialling. A listing walks one live
 * iterator of each set (a Set's iterator skips what was deleted and reaches what was added),
 * so a connection open throughout is listed exactly once; one that opens, closes or finishes
 * its dial meanwhile may be missed or listed twice.
 */
export function createConnectionPages(live: ReadonlySet<LiveConnection>, connecting: ReadonlySet<ConnectionRecord>, draining: () => boolean): (req: ConnectionPageRequest) => ConnectionPage {
  const cursors: Cursor[] = [];
  const snapshot = (h: Held): ConnectionSnapshot => {
    const s = "snapshot" in h ? h.snapshot() : snapshotOf(h, "connecting", 0, 0);
    if (draining()) s.state = "draining";
    return s;
  };
  const stillHeld = (h: Held): boolean => ("snapshot" in h ? live.has(h) : connecting.has(h));
  function* matching(f: ConnectionFilter): Generator<Held> {
    const ok = (r: Readonly<ConnectionRecord>): boolean =>
      (f.direction === undefined || r.direction === f.direction) && (f.namespace === undefined || r.src.namespace === f.namespace || r.dst.namespace === f.namespace);
    for (const c of live) if (ok(c.rec)) yield c;
    for (const r of connecting) if (ok(r)) yield r;
  }
  const cursorFor = (req: ConnectionPageRequest): Cursor => {
    const i = cursors.findIndex((c) => c.listing === req.listing);
    const found = i >= 0 ? cursors.splice(i, 1)[0] : undefined;
    if (found && found.next === req.offset) return found;
    const it = matching(req);
    for (let skipped = 0; skipped < req.offset && !it.next().done; skipped++);
    return { listing: req.listing, next: req.offset, it, peeked: undefined };
  };
  return (req) => {
    const cur = cursorFor(req);
    const items: ConnectionSnapshot[] = [];
    // Read ahead at the previous page: skipped if it has closed (or finished its dial) since.
    let next: Held | undefined = cur.peeked !== undefined && stillHeld(cur.peeked) ? cur.peeked : undefined;
    cur.peeked = undefined;
    for (;;) {
      if (next === undefined) {
        const r = cur.it.next();
        if (r.done) break;
        next = r.value;
      }
      if (items.length >= req.limit) {
        cur.peeked = next;
        break;
      }
      items.push(snapshot(next));
      next = undefined;
    }
    cur.next = req.offset + items.length;
    const more = cur.peeked !== undefined;
    if (more && !req.final) {
      cursors.push(cur);
      if (cursors.length > MAX_CURSORS) cursors.shift();
    }
    return { items, more, held: live.size + connecting.size };
  };
}
