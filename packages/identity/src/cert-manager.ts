/**
 * Per-identity workload certificates: issued on demand or ahead of time
 * (setWanted), rotated at a random point between 40 % and 50 % of their
 * lifetime (rotationTime), retried with capped exponential backoff. A rotation
 * never tears anything down: sessions that started with the old certificate
 * keep it; new sessions get the new one.
 */
import { ZtError } from "@zt/errors";
import { createKeyAndCsr } from "./csr.js";
import { rfc3339 } from "./pem.js";
import type { CertificateSource } from "./types.js";
import { dumpCerts, toWorkloadCertificate, type CertDump, type WorkloadCertificate } from "./workload-cert.js";

export interface CertEvent {
  readonly type: "issued" | "rotated" | "failed";
  readonly identity: string;
  readonly error?: Error;
  /** After "issued" and "rotated": when this certificate is to be replaced. */
  readonly rotatesAt?: Date;
}

export interface CertManagerOptions {
  readonly source: CertificateSource;
  /** Requested certificate lifetime. */
  readonly ttlMs: number;
  readonly onEvent?: (e: CertEvent) => void;
  /** Uniform in [0, 1): where in the rotation window each certificate lands. Default Math.random. */
  readonly random?: () => number;
}

export interface CertManager {
  /** Issue missing certificates now; forget (stop rotating) identities no longer listed. */
  setWanted(identities: Iterable<string>): void;
  /** The current unexpired certificate, if any. */
  get(identity: string): WorkloadCertificate | undefined;
  /**
   * The current certificate, or the one being issued (concurrent callers share one
   * issuance). Rejects with the issuance error when no valid certificate exists.
   * Identities not wanted are issued on demand, cached and not rotated by timer.
   */
  fetch(identity: string): Promise<WorkloadCertificate>;
  /** Every wanted identity has an unexpired certificate. */
  ready(): boolean;
  /** Wanted identities still without an unexpired certificate, sorted. */
  pending(): string[];
  /** Sorted by identity. */
  dump(): CertDump[];
  /** Stops all timers; later fetch() calls reject with CERT_MANAGER_CLOSED. */
  close(): void;
}

interface Entry {
  readonly identity: string;
  wanted: boolean;
  current: WorkloadCertificate | undefined;
  /** When `current` should be replaced (epoch ms). */
  refreshAt: number;
  inflight: Promise<WorkloadCertificate> | undefined;
  timer: NodeJS.Timeout | undefined;
  failures: number;
  lastError: ZtError | undefined;
  lastErrorAt: number;
  lastAttemptAt: number;
}

const STATUS = { Available: "available", Unavailable: "failed", Initializing: "pending" } as const;

export const MIN_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 30_000;
/** fetch() does not start a new attempt sooner than this after a failed one. */
const MIN_RETRY_GAP_MS = 1_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Rotation starts at a random point of [40 %, 50 %] of a certificate's lifetime.
 *
 * Why jitter: certificates issued together (an agent's start, one per identity on its
 * node; the end of a CA outage) would otherwise all renew in the same second, and again
 * every half-life: a burst of key generation and signing on the node, of requests at a
 * remote CA. Each renewal draws afresh, so a cohort keeps drifting apart.
 * Why only earlier than half: at least half of the lifetime is left when a rotation
 * starts, as before, for retries (backoff ≤ 30 s) while the old certificate stays valid.
 * Why 10 %: with the default 24 h, a node's identities issued at once renew over 2.4 h
 * (50 of them, one every 3 min on average); it costs about 11 % more issuances (on
 * average at 45 %), a millisecond each. Istio's sidecar agent draws 50 % ± 1 %
 * (SECRET_GRACE_PERIOD_RATIO_JITTER); a narrower window than ours, on longer lifetimes.
 */
export const ROTATION_WINDOW = { earliest: 0.4, latest: 0.5 } as const;

/** When a certificate valid from `startMs` to `notAfterMs` is rotated, for a draw `u` in [0, 1). */
export function rotationTime(startMs: number, notAfterMs: number, u: number): number {
  const at = ROTATION_WINDOW.latest - (ROTATION_WINDOW.latest - ROTATION_WINDOW.earliest) * Math.min(Math.max(u, 0), 1);
  return startMs + (notAfterMs - startMs) * at;
}

export function createCertManager(opts: CertManagerOptions): CertManager {
  const random = opts.random ?? Math.random;
  const entries = new Map<string, Entry>();
  let closed = false;

  const usable = (e: Entry): boolean => e.current !== undefined && e.current.notAfter.getTime() > Date.now();

  function emit(e: CertEvent): void {
    try {
      opts.onEvent?.(e);
    } catch {
      // A listener's failure must not disturb certificate state.
    }
  }

  function entry(identity: string): Entry {
    let e = entries.get(identity);
    if (!e) {
      e = {
        identity, wanted: false, current: undefined, refreshAt: 0, inflight: undefined,
        timer: undefined, failures: 0, lastError: undefined, lastErrorAt: 0, lastAttemptAt: 0,
      };
      entries.set(identity, e);
    }
    return e;
  }

  const live = (e: Entry): boolean => !closed && entries.get(e.identity) === e;

  function schedule(e: Entry, at: number): void {
    clearTimeout(e.timer);
    const delay = Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS);
    e.timer = setTimeout(() => {
      e.timer = undefined;
      if (!live(e)) return;
      if (Date.now() < at) schedule(e, at); // a capped long delay
      else issue(e).catch(() => undefined); // the outcome is recorded on the entry
    }, delay);
    e.timer.unref();
  }

  function issue(e: Entry): Promise<WorkloadCertificate> {
    if (e.inflight) return e.inflight;
    clearTimeout(e.timer);
    e.timer = undefined;
    const requestedAt = Date.now();
    e.lastAttemptAt = requestedAt;
    const attempt = (async () => {
      const { keyPem, csrPem } = await createKeyAndCsr(e.identity);
      const signed = await opts.source.sign(csrPem, e.identity, opts.ttlMs);
      return toWorkloadCertificate(e.identity, keyPem, signed);
    })();
    const p = attempt.then(
      (cert) => succeeded(e, cert, requestedAt),
      (err: unknown) => failed(e, err),
    );
    e.inflight = p;
    return p;
  }

  function succeeded(e: Entry, cert: WorkloadCertificate, requestedAt: number): WorkloadCertificate {
    e.inflight = undefined;
    if (!live(e)) return cert;
    const rotated = e.current !== undefined;
    e.current = cert;
    e.failures = 0;
    e.lastError = undefined;
    // The lifetime as seen from here: notBefore is back-dated for clock skew.
    const start = Math.max(requestedAt, cert.notBefore.getTime());
    e.refreshAt = rotationTime(start, cert.notAfter.getTime(), random());
    if (e.wanted) schedule(e, e.refreshAt);
    emit({ type: rotated ? "rotated" : "issued", identity: e.identity, rotatesAt: new Date(e.refreshAt) });
    return cert;
  }

  function failed(e: Entry, err: unknown): WorkloadCertificate {
    e.inflight = undefined;
    const cause = err instanceof Error ? err : new Error(String(err));
    const error =
      cause instanceof ZtError
        ? cause
        : new ZtError("CERT_ISSUE_FAILED", `cannot obtain a certificate for ${e.identity}: ${cause.message}`, { cause });
    if (live(e)) {
      e.lastError = error;
      e.lastErrorAt = Date.now();
      e.failures += 1;
      if (e.wanted) schedule(e, Date.now() + backoffMs(e.failures));
    }
    emit({ type: "failed", identity: e.identity, error });
    // The previous certificate stays in use while it is valid.
    if (e.current && usable(e)) return e.current;
    throw error;
  }

  function forget(e: Entry): void {
    clearTimeout(e.timer);
    e.timer = undefined;
    entries.delete(e.identity);
  }

  return {
    setWanted(identities) {
      if (closed) return;
      const wanted = new Set(identities);
      for (const e of [...entries.values()]) if (!wanted.has(e.identity)) forget(e);
      for (const id of wanted) {
        const e = entry(id);
        e.wanted = true;
        if (e.inflight || e.timer) continue;
        if (usable(e)) schedule(e, e.refreshAt);
        else issue(e).catch(() => undefined);
      }
    },
    get(identity) {
      const e = entries.get(identity);
      return e && usable(e) ? e.current : undefined;
    },
    fetch(identity) {
      if (closed) {
        return Promise.reject(new ZtError("CERT_MANAGER_CLOSED", `certificate manager is closed; no certificate for ${identity}`));
      }
      const e = entry(identity);
      if (e.current && usable(e)) {
        if (!e.wanted && !e.inflight && Date.now() >= e.refreshAt) issue(e).catch(() => undefined);
        return Promise.resolve(e.current);
      }
      if (e.inflight) return e.inflight;
      if (e.lastError && Date.now() - e.lastAttemptAt < MIN_RETRY_GAP_MS) return Promise.reject(e.lastError);
      return issue(e);
    },
    ready() {
      return [...entries.values()].every((e) => !e.wanted || usable(e));
    },
    pending() {
      return [...entries.values()].filter((e) => e.wanted && !usable(e)).map((e) => e.identity).sort();
    },
    dump() {
      return [...entries.values()]
        .sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0))
        .map((e): CertDump => {
          const state = usable(e) ? "Available" : e.lastError && !e.inflight ? "Unavailable" : "Initializing";
          const base = {
            identity: e.identity,
            state,
            status: STATUS[state],
            certChain: dumpCerts(e.current?.certChain ?? []),
            rootCerts: dumpCerts(e.current?.roots ?? []),
            // When the wanted certificate is to be replaced (on-demand ones are not rotated by timer).
            ...(usable(e) && e.wanted ? { rotatesAt: rfc3339(new Date(e.refreshAt)) } : {}),
          } as const;
          if (!e.lastError) return base;
          const lastError = { code: e.lastError.code, message: e.lastError.message, at: rfc3339(new Date(e.lastErrorAt)) };
          return { ...base, error: e.lastError.message, lastError };
        });
    },
    close() {
      closed = true;
      for (const e of entries.values()) {
        clearTimeout(e.timer);
        e.timer = undefined;
      }
    },
  };
}

/** 1 s, 2 s, 4 s, ... capped at 30 s. */
export function backoffMs(failures: number): number {
  return Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.max(0, failures - 1));
}
