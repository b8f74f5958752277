/**
 * The one access-log line per connection, written so that a peer cannot make the log
 * cost more than its traffic: every field is capped in length, and refusals (connections
 * that never opened, each one cheap for whoever sends them) are rate-limited per code and
 * source address, and in all. A suppressed line is still counted by the metrics, and the
 * next line logged for the same key says how many were not.
 */
import { CATALOG } from "@zt/errors";
import type { ConnectionRecord } from "@zt/proxy";
import type { Logger } from "pino";

/** Longest string field written; the error text may be longer. */
const MAX_FIELD = 256;
const MAX_ERROR = 1024;
/** Per (code, source address): a burst of this many refusal lines, then one per second. */
const KEY_BURST = 10;
const KEY_PER_SECOND = 1;
/** All refusal lines together: a burst, then this many per second. */
const ALL_BURST = 200;
const ALL_PER_SECOND = 50;
const MAX_KEYS = 10_000;

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
}

export interface AccessLog {
  /** Write (or, for a refusal over its rate, count) the line of a connection that ended; `opened` when it was ever connected. */
  write(rec: ConnectionRecord, opened: boolean): void;
  /** Refusal lines not written since start. */
  suppressed(): number;
}

export function createAccessLog(logger: Logger): AccessLog {
  const log = logger.child({ component: "access" });
  const keys = new Map<string, Bucket>();
  const all: Bucket = { tokens: ALL_BURST, at: Date.now(), suppressed: 0 };
  let total = 0;
  const take = (b: Bucket, burst: number, perSecond: number, now: number): boolean => {
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  };
  return {
    write(rec, opened) {
      let suppressedBefore = 0;
      if (!opened && rec.error) {
        const now = Date.now();
        const key = `${rec.error.code}|${ipOf(rec.src.addr)}`;
        let b = keys.get(key);
        if (!b) {
          if (keys.size >= MAX_KEYS) keys.clear();
          keys.set(key, (b = { tokens: KEY_BURST, at: now, suppressed: 0 }));
        }
        if (!take(b, KEY_BURST, KEY_PER_SECOND, now) || !take(all, ALL_BURST, ALL_PER_SECOND, now)) {
          b.suppressed++;
          total++;
          return;
        }
        suppressedBefore = b.suppressed;
        b.suppressed = 0;
      }
      logLine(log, rec, suppressedBefore);
    },
    suppressed: () => total,
  };
}

function ipOf(addr: string): string {
  const i = addr.lastIndexOf(":");
  return i > 0 ? addr.slice(0, i) : addr;
}

function clip(v: string, max = MAX_FIELD): string {
  return v.length > max ? `${v.slice(0, max)}…(${v.length} chars)` : v;
}

/** Info when it went well, else the level the catalog gives the error code. Empty fields are omitted. */
function logLine(log: Logger, rec: ConnectionRecord, suppressed: number): void {
  const { src, dst } = rec;
  const line: Record<string, string | number> = {};
  const put = (key: string, v: string | undefined): void => {
    if (v) line[key] = clip(v);
  };
  put("src.addr", src.addr);
  put("src.workload", src.workload);
  put("src.namespace", src.namespace);
  put("src.identity", src.identity);
  put("dst.addr", dst.addr);
  put("dst.hbone_addr", rec.dstHboneAddr);
  put("dst.service", rec.dstService);
  put("dst.workload", dst.workload);
  put("dst.namespace", dst.namespace);
  put("dst.identity", dst.identity);
  line["direction"] = rec.direction;
  line["bytes_sent"] = rec.bytesSent;
  line["bytes_recv"] = rec.bytesRecv;
  line["duration"] = Math.max(0, Date.now() - rec.startMs);
  if (rec.flag !== "-") line["response_flags"] = rec.flag;
  if (rec.dryRun) {
    line["authz.dry_run"] = clip(rec.dryRun.policies);
    line["authz.dry_run_decision"] = rec.dryRun.decision;
  }
  if (rec.error) line["error"] = clip(`${rec.error.code}: ${rec.error.message}`, MAX_ERROR);
  if (suppressed > 0) line["suppressed"] = suppressed;
  if (!rec.error) log.info(line, "connection complete");
  else log[CATALOG[rec.error.code].level](line, suppressed > 0 ? `connection failed (${suppressed} similar refusals from this source were not logged)` : "connection failed");
}
