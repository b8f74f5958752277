/**
 * The local config file as a discovery source: one-shot load, and a watcher that
 * follows the file through atomic renames and Kubernetes ConfigMap symlink swaps.
 */
import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { ErrorCode } from "@zt/errors";
import { ZtError } from "./errors.js";
import { type LocalConfigDefaults, parseLocalConfig } from "./local-file.js";
import type { MeshSnapshot } from "./types.js";

export interface LocalConfigHandlers {
  /** A changed file parsed cleanly: this is the new state. */
  onSnapshot(s: MeshSnapshot): void;
  /** The file could not be read or parsed (ConfigError, or ZtError CONFIG_FILE_UNREADABLE); keep the last good state. */
  onError(err: ZtError): void;
}

export interface LocalConfigWatchOptions {
  /** Quiet time after a directory event before re-reading; default 100 ms. */
  readonly debounceMs?: number;
  /** Fallback poll interval; default 2000 ms. */
  readonly pollMs?: number;
  /**
   * false (default): the content present when watching starts is the baseline (the caller
   * loaded it with loadLocalConfig) and is not reported. true: report it like a change.
   */
  readonly emitInitial?: boolean;
}

export interface LocalConfigWatcher {
  /** Stops watching; no handler is called afterwards. */
  close(): void;
  /** Re-reads the file now (bypassing the debounce); handlers are called before it resolves. */
  reload(): Promise<void>;
}

async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code ?? "EUNKNOWN";
    const detail = e instanceof Error ? e.message : String(e);
    throw new ZtError("CONFIG_FILE_UNREADABLE", `cannot read local config file ${path} (${errno}): ${detail}`, { cause: e });
  }
}

function asZtError(e: unknown, code: ErrorCode): ZtError {
  return e instanceof ZtError ? e : new ZtError(code, e instanceof Error ? e.message : String(e), { cause: e });
}

/**
 * Reads and parses the local config file.
 * @throws ZtError CONFIG_FILE_UNREADABLE (names the path and errno) or ConfigError (CONFIG_INVALID).
 */
export async function loadLocalConfig(path: string, defaults: LocalConfigDefaults): Promise<MeshSnapshot> {
  return parseLocalConfig(await readConfigText(path), path, defaults);
}

/**
 * Watches the file's directory (fs.watch) with a debounce, plus a poll as a fallback.
 * onSnapshot is called only when the content changed and parsed; each distinct failure
 * is reported once through onError.
 */
export function watchLocalConfig(
  path: string,
  defaults: LocalConfigDefaults,
  handlers: LocalConfigHandlers,
  options: LocalConfigWatchOptions = {},
): LocalConfigWatcher {
  const abs = resolve(path);
  const debounceMs = options.debounceMs ?? 100;
  let closed = false;
  let lastGood: string | undefined; // text of the state the caller holds
  let lastSeen: string | undefined; // last text (or "\0errno") processed, to report each failure once
  let fsWatcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();

  const check = async (): Promise<void> => {
    if (closed) return;
    let text: string;
    try {
      text = await readConfigText(abs);
    } catch (e) {
      const err = asZtError(e, "CONFIG_FILE_UNREADABLE");
      const key = `\0${err.message}`;
      if (closed || lastSeen === key) return;
      lastSeen = key;
      handlers.onError(err);
      return;
    }
    if (closed || text === lastSeen) return;
    lastSeen = text;
    if (text === lastGood) return;
    let snapshot: MeshSnapshot;
    try {
      snapshot = parseLocalConfig(text, path, defaults);
    } catch (e) {
      handlers.onError(asZtError(e, "CONFIG_INVALID"));
      return;
    }
    lastGood = text;
    try {
      handlers.onSnapshot(snapshot);
    } catch (e) {
      handlers.onError(new ZtError("CONFIG_APPLY_FAILED", `applying ${path} failed: ${asZtError(e, "CONFIG_APPLY_FAILED").message}`, { cause: e }));
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
      void reload();
    }, debounceMs);
    debounce.unref();
  };

  const startWatch = (): void => {
    if (closed || fsWatcher) return;
    try {
      const w = watch(dirname(abs), { persistent: false }, schedule);
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
    void reload();
  }, options.pollMs ?? 2000);
  poll.unref();

  if (!options.emitInitial) {
    chain = readConfigText(abs).then(
      (text) => {
        lastSeen = text;
        lastGood = text;
      },
      () => undefined,
    );
  }
  startWatch();
  if (options.emitInitial) void reload();

  return {
    close(): void {
      closed = true;
      if (debounce) clearTimeout(debounce);
      debounce = undefined;
      clearInterval(poll);
      fsWatcher?.close();
      fsWatcher = undefined;
    },
    reload,
  };
}
