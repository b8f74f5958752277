/**
 * One resource kept in step with the API server, as client-go's reflector does: a list
 * (in pages), then a watch from its resourceVersion with bookmarks; a watch that ends is
 * resumed from the last resourceVersion seen; 410 Gone (expired) relists; failures retry
 * with capped, jittered backoff. Built on @kubernetes/client-node's KubeConfig (auth,
 * TLS): its informer neither asks for bookmarks nor pages its list, and stops for good on
 * an error. The watch stream is read here, not with its Watch, which drops a line it cannot
 * parse without a word: an event lost so stays lost once the events after it move the
 * resourceVersion past it. Here such a line ends the watch, which resumes from the
 * resourceVersion before it (or relists, when that is gone).
 */
import { createInterface } from "node:readline";
import { finished } from "node:stream/promises";
import type { KubeConfig } from "@kubernetes/client-node";
import fetch from "node-fetch";
import { ZtError } from "@zt/errors";

export interface KubeObjectLike {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly resourceVersion?: string };
}

export interface ResourceRef {
  /** e.g. "pods"; in messages. */
  readonly plural: string;
  /** API group ("" for core). */
  readonly group: string;
  /** The collection path, e.g. /api/v1/pods or /apis/discovery.k8s.io/v1/endpointslices. */
  readonly path: string;
  /**
   * A resource the API server may not serve at all (a CRD not installed): a 404 counts as
   * an empty, synced list, and the list is tried again (with the backoff's longest delay).
   */
  readonly optional?: boolean;
}

export interface SyncStatus {
  readonly resource: string;
  /** "listing" | "watching" | "retrying" | "stopped" */
  readonly state: "listing" | "watching" | "retrying" | "stopped";
  /** A full list has been received (since start). */
  readonly synced: boolean;
  readonly resourceVersion: string;
  readonly objects: number;
  readonly relists: number;
  readonly reconnects: number;
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
}

export interface ReflectorHandlers<T> {
  /** The full set after a (re)list. */
  replace(items: readonly T[]): void;
  /** One change seen by the watch. */
  event(type: "ADDED" | "MODIFIED" | "DELETED", obj: T): void;
  /** State changes (and each error). */
  status?(s: SyncStatus): void;
}

export interface ReflectorOptions {
  readonly pageSize?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** How long one watch request may last before it is renewed (default 5-10 min, as client-go). */
  readonly watchTimeoutSeconds?: number;
  /** How long a list or a watch may take to answer (default 30 s). */
  readonly requestTimeoutMs?: number;
  readonly random?: () => number;
}

export interface Reflector {
  status(): SyncStatus;
  stop(): void;
}

export function startReflector<T extends KubeObjectLike>(kc: KubeConfig, ref: ResourceRef, h: ReflectorHandlers<T>, o: ReflectorOptions = {}): Reflector {
  const random = o.random ?? Math.random;
  const initial = o.backoffInitialMs ?? 500;
  const max = o.backoffMaxMs ?? 30_000;
  let st: { -readonly [K in keyof SyncStatus]: SyncStatus[K] } = { resource: ref.plural, state: "listing", synced: false, resourceVersion: "", objects: 0, relists: 0, reconnects: 0, lastError: null };
  let failures = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let abort: AbortController | undefined;
  /** Aborts the list under way when stopped. */
  const lists = new AbortController();
  /** Relists in a row that no event came between: past one, they wait like failures. */
  let idleRelists = 0;
  const known = new Set<string>();
  const keyOf = (obj: T): string => `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
  const set = (patch: Partial<SyncStatus>): void => {
    st = { ...st, ...patch };
    h.status?.(st);
  };

  const fail = (err: ZtError, then: () => void): void => {
    if (stopped) return;
    failures++;
    const base = Math.min(max, initial * 2 ** Math.min(failures - 1, 20));
    const delay = Math.round(base * (0.5 + random() / 2));
    set({ state: "retrying", lastError: { code: err.code, message: `${err.message}; retrying in ${delay} ms`, at: new Date().toISOString() } });
    timer = setTimeout(then, delay);
  };

  async function list(): Promise<void> {
    if (stopped) return;
    set({ state: "listing" });
    const items: T[] = [];
    let cont: string | undefined;
    let rv = "";
    try {
      do {
        const q = new URLSearchParams({ limit: String(o.pageSize ?? 500), ...(cont ? { continue: cont } : {}) });
        const page = (await request(`${ref.path}?${q}`)) as { metadata?: { resourceVersion?: string; continue?: string }; items?: T[] } | undefined;
        // Never taken for an empty list: that would wipe the mesh state.
        if (!page || !Array.isArray(page.items)) throw Object.assign(new Error("the answer is not a list (no items)"), { invalid: true });
        items.push(...page.items);
        rv = page.metadata?.resourceVersion ?? "";
        cont = page.metadata?.continue || undefined;
      } while (cont);
    } catch (err) {
      if (err instanceof Gone) {
        // The pages' snapshot expired between two pages: start over.
        set({ relists: st.relists + 1 });
        return void list();
      }
      if (stopped) return;
      if (ref.optional && (err as { statusCode?: number }).statusCode === 404) {
        if (!st.synced || known.size > 0) h.replace([]);
        known.clear();
        const message = `list ${ref.plural}: the API server does not serve it (is its CustomResourceDefinition installed?); none until it does; asking again in ${max} ms`;
        set({ synced: true, state: "retrying", objects: 0, lastError: { code: "KUBE_REQUEST_FAILED", message, at: new Date().toISOString() } });
        timer = setTimeout(() => void list(), max);
        return;
      }
      return fail(toZtError(err, `list ${ref.plural}`), () => void list());
    }
    if (stopped) return;
    failures = 0;
    known.clear();
    for (const i of items) known.add(keyOf(i));
    h.replace(items);
    set({ synced: true, resourceVersion: rv, objects: known.size, lastError: null });
    watch();
  }

  function watch(): void {
    if (stopped) return;
    set({ state: "watching" });
    let expired = false;
    let sawEvent = false;
    let failed: string | undefined;
    /** Why the watch was ended here: a line that is no watch event, or a handler that threw. */
    let broken: { line: string } | { handler: unknown } | undefined;
    let done = false;
    const began = Date.now();
    const timeoutSeconds = o.watchTimeoutSeconds ?? Math.round(300 * (1 + random()));
    const params = new URLSearchParams({ watch: "true", resourceVersion: st.resourceVersion, allowWatchBookmarks: "true", timeoutSeconds: String(timeoutSeconds) });
    const onEvent = (type: string, obj: T & { code?: number }): void => {
      if (type === "ERROR") {
        // 410 Gone, or another failure of this watch (e.g. a resourceVersion the server does not have): relist.
        expired = true;
        if (obj.code !== 410) failed = `watch ${ref.plural}: the API server ended the watch: ${(obj as { message?: string }).message ?? `code ${obj.code ?? "?"}`}`;
        return;
      }
      sawEvent = true;
      failures = 0;
      idleRelists = 0;
      if (st.lastError) set({ lastError: null });
      if (type === "ADDED" || type === "MODIFIED" || type === "DELETED") {
        if (type === "DELETED") known.delete(keyOf(obj));
        else known.add(keyOf(obj));
        h.event(type, obj);
      }
      st = { ...st, resourceVersion: obj.metadata?.resourceVersion ?? st.resourceVersion, objects: known.size };
    };
    const ac = new AbortController();
    abort = ac;
    const end = (err: unknown): void => {
      if (done) return;
      done = true;
      ac.abort();
      abort = undefined;
      onDone(err);
    };
    const onLine = (line: string): void => {
      // Nothing after a bad line is taken: it resumes from before it.
      if (done || stopped || line.trim() === "") return;
      const ev = parseEvent(line);
      if (!ev) {
        broken = { line };
        return end(null);
      }
      try {
        onEvent(ev.type, ev.object as T & { code?: number });
      } catch (err) {
        broken = { handler: err };
        end(null);
      }
    };
    const onDone = (err: unknown): void => {
      if (stopped) return;
      if (broken && "line" in broken) {
        set({ reconnects: st.reconnects + 1 });
        return fail(new ZtError("KUBE_REQUEST_FAILED", `watch ${ref.plural}: the API server sent a line that is no watch event (${clip(broken.line)}); resuming from resourceVersion ${st.resourceVersion}`), watch);
      }
      if (broken) {
        // Ours, not the API server's: whatever the handler made of the event, a relist sets it right.
        const why = broken.handler instanceof Error ? broken.handler.message : String(broken.handler);
        set({ relists: st.relists + 1 });
        return fail(new ZtError("KUBE_REQUEST_FAILED", `watch ${ref.plural}: an event could not be taken (${why}); relisting`), () => void list());
      }
      const status = (err as { statusCode?: number } | null)?.statusCode;
      if (expired || status === 410) {
        set({ relists: st.relists + 1 });
        if (++idleRelists > 1 || failed) return fail(new ZtError("KUBE_REQUEST_FAILED", failed ?? `watch ${ref.plural}: 410 Gone again right after a relist`), () => void list());
        return void list();
      }
      set({ reconnects: st.reconnects + 1 });
      if (err && !sawEvent) return fail(toZtError(err, `watch ${ref.plural}`), watch);
      // A server that closes watches at once, saying nothing, is not asked again in a tight loop.
      if (!sawEvent && Date.now() - began < 1000) return fail(new ZtError("KUBE_REQUEST_FAILED", `watch ${ref.plural}: the API server ended the watch at once`), watch);
      // Ended on its own (timeoutSeconds) or after events: resume at once from the last resourceVersion.
      if (err) failures = 0;
      watch();
    };
    stream(`${ref.path}?${params}`, onLine, ac).then(
      () => end(null),
      (err: unknown) => end(err),
    );
  }

  /** One watch request: its lines to `onLine` as they arrive; settles when the stream ends. */
  async function stream(path: string, onLine: (line: string) => void, ac: AbortController): Promise<void> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new ZtError("KUBE_UNREACHABLE", "the kubeconfig has no current cluster");
    const init = (await kc.applyToFetchOptions({})) as Parameters<typeof fetch>[1] & { agent?: { sockets?: Record<string, ({ setKeepAlive(on: boolean, ms: number): void } | undefined)[]> } };
    // The answer's headers within the request timeout (a server that takes the connection and
    // never answers would hold the watch for good); the stream then lasts up to timeoutSeconds.
    const ms = o.requestTimeoutMs ?? 30_000;
    let late = false;
    const t = setTimeout(() => {
      late = true;
      ac.abort();
    }, ms);
    let res: Awaited<ReturnType<typeof fetch>>;
    try {
      res = await fetch(`${cluster.server}${path}`, { ...init, method: "GET", signal: ac.signal as never });
    } catch (err) {
      throw late ? Object.assign(new Error(`no answer within ${ms} ms`), { code: "ETIMEDOUT" }) : err;
    } finally {
      clearTimeout(t);
    }
    // As client-node's Watch does: a peer that vanishes is found by the kernel's probes.
    if (init.agent && typeof init.agent === "object") for (const socket of Object.values(init.agent.sockets ?? {}).flat()) socket?.setKeepAlive(true, 30_000);
    if (res.status !== 200) {
      res.body.resume();
      throw Object.assign(new Error(res.statusText || `HTTP ${res.status}`), { statusCode: res.status });
    }
    const lines = createInterface({ input: res.body, crlfDelay: Infinity });
    lines.on("line", onLine);
    // readline passes on the body's error (a reset, our abort): taken from finished() below.
    lines.on("error", () => {});
    // A stream that ends mid-line gives that part as a last line (no watch event: resumed from before it).
    await finished(res.body).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "ERR_STREAM_PREMATURE_CLOSE" ? Object.assign(new Error("the watch stream was cut off"), { code: err.code }) : err;
    });
  }

  async function request(path: string): Promise<unknown> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new ZtError("KUBE_UNREACHABLE", "the kubeconfig has no current cluster");
    const init = (await kc.applyToFetchOptions({})) as Parameters<typeof fetch>[1] & { headers?: Record<string, string> };
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(), o.requestTimeoutMs ?? 30_000);
    const onStop = (): void => ac.abort();
    lists.signal.addEventListener("abort", onStop);
    try {
      const res = await fetch(`${cluster.server}${path}`, { ...init, method: "GET", signal: ac.signal as never });
      const body = (await res.json().catch(() => undefined)) as { message?: string } | undefined;
      if (res.status === 410) throw new Gone();
      if (!res.ok) throw Object.assign(new Error(body?.message ?? res.statusText), { statusCode: res.status });
      return body;
    } finally {
      clearTimeout(t);
      lists.signal.removeEventListener("abort", onStop);
    }
  }

  void list();
  return {
    status: () => st,
    stop() {
      stopped = true;
      clearTimeout(timer);
      abort?.abort();
      lists.abort();
      set({ state: "stopped" });
    },
  };
}

class Gone extends Error {}

/** A watch line as the API server sends it: {"type": "...", "object": {...}}; undefined for anything else. */
function parseEvent(line: string): { type: string; object: object } | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  const e = v as { type?: unknown; object?: unknown } | null;
  return typeof e === "object" && e !== null && typeof e.type === "string" && typeof e.object === "object" && e.object !== null ? { type: e.type, object: e.object } : undefined;
}

/** A line for a message: quoted, at most 80 characters of it. */
function clip(line: string): string {
  return line.length > 80 ? `${JSON.stringify(line.slice(0, 80))}… (${line.length} characters)` : JSON.stringify(line);
}

/** 401 and 403 name the verb and resource (and the API server's own words); anything else is the server being unreachable or failing. */
function toZtError(err: unknown, what: string): ZtError {
  const e = err as { statusCode?: number; message?: string; code?: string };
  const msg = e.message ?? String(err);
  if ((err as { invalid?: boolean }).invalid) return new ZtError("KUBE_REQUEST_FAILED", `${what}: ${msg}`);
  if (e.statusCode === 401) return new ZtError("KUBE_UNAUTHORIZED", `${what}: 401 Unauthorized: the API server refused the credentials (expired or wrong token?)`);
  if (e.statusCode === 403) return new ZtError("KUBE_FORBIDDEN", `${what}: 403 Forbidden: ${msg} (check the ClusterRole bound to this agent's service account)`);
  if (e.statusCode !== undefined) return new ZtError("KUBE_REQUEST_FAILED", `${what}: HTTP ${e.statusCode}: ${msg}`);
  return new ZtError("KUBE_UNREACHABLE", `${what}: the API server is unreachable: ${msg}${e.code ? ` (${e.code})` : ""}`);
}
