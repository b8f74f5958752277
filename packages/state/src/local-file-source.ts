/**
 * The local config file as a discovery source: one-shot load, and a watcher that
 * follows the file through atomic renames and Kubernetes ConfigMap symlink swaps.
 * The caller's thread only stats the file; reading, hashing and parsing happen in a
 * worker thread (local-file-job.ts), and a file over `maxBytes` is refused unread.
 */
import { type FSWatcher, watch as fsWatch } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ZtError } from "@zt/errors";
import { tooLarge, unreadable } from "./local-file-errors.js";
import { type JobResult, type ParseJob, type RunningJob, runParseJob } from "./local-file-job.js";
import type { LocalConfigDefaults } from "./local-file.js";
import type { MeshSnapshot } from "./types.js";

/** The default cap on the file's size: 4 MiB, about 30,000 one-line workload entries. */
export const DEFAULT_LOCAL_CONFIG_MAX_BYTES = 4 * 1024 * 1024;

export interface LocalConfigHandlers {
  /** A changed file parsed cleanly: this is the new state. */
  onSnapshot(s: MeshSnapshot): void;
  /**
   * The file could not be used (ConfigError; ZtError CONFIG_FILE_UNREADABLE, CONFIG_FILE_TOO_LARGE
   * or CONFIG_PARSE_FAILED); keep the last good state.
   */
  onError(err: ZtError): void;
  /** The file changed back to the content of the state the caller holds (e.g. after a rejected edit was undone). */
  onUnchanged?(): void;
}

export interface LocalConfigReadOptions {
  /** Files larger than this are refused without being read; default DEFAULT_LOCAL_CONFIG_MAX_BYTES. */
  readonly maxBytes?: number;
}

export interface LocalConfigWatchOptions extends LocalConfigReadOptions {
  /** Quiet time after a directory event before checking; default 100 ms. */
  readonly debounceMs?: number;
  /** Fallback poll interval (a stat; the file is read only when its size, mtime or inode changed); default 2000 ms. */
  readonly pollMs?: number;
  /**
   * false (default): the content present when watching starts is the baseline (the caller
   * loaded it with loadLocalConfig) and is not reported. true: report it like a change.
   */
  readonly emitInitial?: boolean;
}

export interface LocalConfigWatcher {
  /** Stops watching (and any parse in progress); no handler is called afterwards. */
  close(): void;
  /** Checks the file now (bypassing the debounce); handlers are called before it resolves. */
  reload(): Promise<void>;
}

interface Stamp {
  readonly key: string;
  readonly size: number;
}

/** Identity of the file's current content as stat sees it: device, inode, size, mtime, ctime. */
async function stamp(abs: string, source: string): Promise<Stamp> {
  try {
    const s = await stat(abs, { bigint: true });
    return { key: `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`, size: Number(s.size) };
  } catch (e) {
    throw unreadable(source, e);
  }
}

/**
 * Reads and parses the local config file (in a worker thread, like every reload).
 * @throws ZtError CONFIG_FILE_UNREADABLE (names the path and errno), CONFIG_FILE_TOO_LARGE
 * (names the path, its size and the cap), CONFIG_PARSE_FAILED, or ConfigError (CONFIG_INVALID).
 */
export async function loadLocalConfig(path: string, defaults: LocalConfigDefaults, options: LocalConfigReadOptions = {}): Promise<MeshSnapshot> {
  return (await loadWithBaseline(path, defaults, options.maxBytes ?? DEFAULT_LOCAL_CONFIG_MAX_BYTES)).snapshot;
}

/** What a watcher compares against: the stat taken before reading, and the hash of exactly what was parsed. */
interface Baseline {
  readonly stamp: string;
  readonly hash: string;
}

async function loadWithBaseline(path: string, defaults: LocalConfigDefaults, maxBytes: number): Promise<{ snapshot: MeshSnapshot; baseline: Baseline }> {
  const abs = resolve(path);
  const before = await stamp(abs, path);
  if (before.size > maxBytes) throw tooLarge(path, before.size, maxBytes);
  const r = await runParseJob({ path: abs, source: path, defaults, maxBytes, mode: "parse", knownHashes: [] }).result;
  if (r.kind === "failed") throw r.error;
  if (r.kind !== "parsed") throw new ZtError("CONFIG_PARSE_FAILED", `the parser of ${path} gave no snapshot`);
  return { snapshot: r.snapshot, baseline: { stamp: before.key, hash: r.hash } };
}

/**
 * loadLocalConfig, then watchLocalConfig from exactly the content loaded: a change made
 * while the first load runs is reported, never mistaken for the baseline.
 * @throws like loadLocalConfig.
 */
export async function openLocalConfig(
  path: string,
  defaults: LocalConfigDefaults,
  handlers: LocalConfigHandlers,
  options: Omit<LocalConfigWatchOptions, "emitInitial"> = {},
): Promise<{ snapshot: MeshSnapshot; watcher: LocalConfigWatcher }> {
  const { snapshot, baseline } = await loadWithBaseline(path, defaults, options.maxBytes ?? DEFAULT_LOCAL_CONFIG_MAX_BYTES);
  return { snapshot, watcher: watch(path, defaults, handlers, options, baseline) };
}

/**
 * Watches the file's directory (fs.watch) with a debounce, plus a poll as a fallback.
 * A check stats the file and goes further only when the stat changed; onSnapshot is called
 * only when the content changed and parsed; each distinct failure is reported once.
 */
export function watchLocalConfig(
  path: string,
  defaults: LocalConfigDefaults,
  handlers: LocalConfigHandlers,
  options: LocalConfigWatchOptions = {},
): LocalConfigWatcher {
  return watch(path, defaults, handlers, options, undefined);
}

function watch(path: string, defaults: LocalConfigDefaults, handlers: LocalConfigHandlers, options: LocalConfigWatchOptions, baseline: Baseline | undefined): LocalConfigWatcher {
  const abs = resolve(path);
  const debounceMs = options.debounceMs ?? 100;
  const maxBytes = options.maxBytes ?? DEFAULT_LOCAL_CONFIG_MAX_BYTES;
  let closed = false;
  let lastStamp: string | undefined = baseline?.stamp; // stat of the content last processed
  let goodHash: string | undefined = baseline?.hash; // content of the state the caller holds
  let lastSeen: string | undefined = baseline?.hash; // hash (or "\0" + message) of the last outcome, to report each failure once
  let running: RunningJob | undefined;
  let fsWatcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();

  const job = async (mode: ParseJob["mode"]): Promise<JobResult> => {
    running = runParseJob({ path: abs, source: path, defaults, maxBytes, mode, knownHashes: [goodHash, lastSeen].filter((h) => h !== undefined) });
    try {
      return await running.result;
    } finally {
      running = undefined;
    }
  };

  const fail = (err: ZtError, seen: string): void => {
    if (closed || lastSeen === seen) return;
    lastSeen = seen;
    handlers.onError(err);
  };

  const check = async (): Promise<void> => {
    if (closed) return;
    let s: Stamp;
    try {
      s = await stamp(abs, path);
    } catch (e) {
      lastStamp = undefined;
      const err = e instanceof ZtError ? e : unreadable(path, e);
      return fail(err, `\0${err.message}`);
    }
    if (closed || s.key === lastStamp) return;
    lastStamp = s.key;
    if (s.size > maxBytes) {
      const err = tooLarge(path, s.size, maxBytes);
      return fail(err, `\0${err.message}`);
    }
    const r = await job("parse");
    if (closed) return;
    if (r.kind === "failed") {
      // Not read: try again at the next check. A parser that crashed or ran out of memory on
      // this file would only do so again (each try a worker and its heap): wait for a change.
      if (r.hash === undefined && r.error.code !== "CONFIG_PARSE_FAILED") lastStamp = undefined;
      return fail(r.error, r.hash ?? `\0${r.error.message}`);
    }
    if (r.kind !== "parsed") {
      if (r.hash === goodHash && lastSeen !== goodHash) {
        lastSeen = goodHash;
        handlers.onUnchanged?.();
      }
      return;
    }
    goodHash = r.hash;
    lastSeen = r.hash;
    try {
      handlers.onSnapshot(r.snapshot);
    } catch (e) {
      handlers.onError(new ZtError("CONFIG_APPLY_FAILED", `applying ${path} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
    }
  };

  // Checks run one at a time, in order; a throwing handler rejects that reload() only.
  const reload = (): Promise<void> => {
    const next = chain.then(check);
    chain = next.catch(() => undefined);
    return next;
  };

  const schedule = (): void => {
    if (closed) return;
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = undefined;
      // A handler that threw already had its chance; the watch goes on.
      reload().catch(() => undefined);
    }, debounceMs);
    debounce.unref();
  };

  const startWatch = (): void => {
    if (closed || fsWatcher) return;
    try {
      const w = fsWatch(dirname(abs), { persistent: false }, schedule);
      w.on("error", () => {
        w.close();
        if (fsWatcher === w) fsWatcher = undefined; // the poll re-establishes it
        schedule();
      });
      fsWatcher = w;
    } catch {
      fsWatcher = undefined; // directory missing or not watchable: the poll covers it
    }
  };

  const poll = setInterval(() => {
    startWatch();
    reload().catch(() => undefined);
  }, options.pollMs ?? 2000);
  poll.unref();

  if (!options.emitInitial && baseline === undefined) {
    // The baseline: the content now, as the caller presumably loaded it (openLocalConfig knows it exactly).
    chain = (async () => {
      try {
        const s = await stamp(abs, path);
        if (s.size > maxBytes) return;
        const r = await job("hash");
        if (r.kind === "hashed") [lastStamp, goodHash, lastSeen] = [s.key, r.hash, r.hash];
      } catch {
        // unreadable now: the first check reports it
      }
    })();
  }
  startWatch();
  if (options.emitInitial) reload().catch(() => undefined);

  return {
    close(): void {
      closed = true;
      if (debounce) clearTimeout(debounce);
      debounce = undefined;
      clearInterval(poll);
      fsWatcher?.close();
      fsWatcher = undefined;
      running?.cancel();
    },
    reload,
  };
}
