/**
 * The main thread's side of the data-path workers (ZTUNNEL_WORKER_THREADS): it starts
 * them, keeps their mesh and certificate replicas current, answers their certificate
 * requests, asks them what they hold (readiness, /config_dump, /metrics), drains them,
 * and replaces one that dies: logged, its connections counted as lost, the others serve on.
 */
import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import { Counter, type MetricObjectWithValues, type MetricValue, type Registry } from "prom-client";
import { isErrorCode, ZtError } from "@zt/errors";
import type { CertManager, WorkloadCertificate } from "@zt/identity";
import { SHARED_PEER_SLOTS } from "@zt/proxy";
import type { MeshStore } from "@zt/state";
import type { ConnectionPage, ConnectionPageRequest } from "../connection-pages.js";
import type { DataPathStats } from "../data-path.js";

/** A worker's DataPathStats, with its index (the ones that did not answer are left out). */
export type WorkerStats = DataPathStats & { readonly worker: number };
import type { CertMaterial, FromWorker, ToWorker, WorkerInit } from "./protocol.js";

export interface WorkersOptions {
  readonly count: number;
  readonly env: Record<string, string | undefined>;
  readonly store: MeshStore;
  readonly certs: CertManager;
  readonly logger: Logger;
  readonly registry: Registry;
  /** HBONE_BUFFER_BUDGET, shared out among the workers. */
  readonly receiveBytes: number;
  /** Several workers bind each listener (SO_REUSEPORT). */
  readonly shared: boolean;
  readonly fdCounters: SharedArrayBuffer;
  readonly logLevel: () => string;
}

export interface Workers {
  addresses(): Record<string, string[]>;
  pending(): Promise<string[]>;
  /** What each worker that answered holds, with its index (a stuck one is left out). */
  stats(): Promise<WorkerStats[]>;
  metrics(): Promise<MetricObjectWithValues<MetricValue<string>>[][]>;
  /** Proxied connections held, all workers. */
  live(): number;
  /** How many workers there are (numbered from 0). */
  count(): number;
  /** A page of worker `index`'s connections; undefined when it did not answer (starting, stuck, gone). */
  connections(index: number, req: ConnectionPageRequest): Promise<ConnectionPage | undefined>;
  /** A certificate was issued or rotated in the main thread: every worker gets it. */
  certChanged(cert: WorkloadCertificate): void;
  setLogLevel(level: string): void;
  /** Every worker drains (DRAIN_TIMEOUT), then they end. */
  drain(timeoutMs: number): Promise<void>;
}

interface Slot {
  readonly index: number;
  worker: Worker;
  live: Int32Array;
  ready: boolean;
  addresses: Record<string, string[]>;
  replies: Map<number, (v: unknown) => void>;
  drained: (() => void) | undefined;
}

/**
 * V8's young generation of each worker (two semi-spaces of a third each). V8's default lets it
 * grow to 48 MiB per worker under a burst of connections, and it stays committed (and in RSS)
 * while they idle: with 2 workers that was about half of what an idle proxied connection cost.
 * Connections keep little on the heap (their bytes are off-heap buffers); a small nursery
 * costs more frequent, short scavenges and no measurable CPU in the bench.
 */
const YOUNG_GENERATION_MB = 6;

/** How long a question to a worker (readiness, metrics, what it holds) may wait for its answer. */
const ASK_TIMEOUT_MS = 2000;

const material = (c: WorkloadCertificate): CertMaterial => ({ identity: c.identity, keyPem: c.keyPem, certChain: c.certChain, roots: c.roots });

export async function startWorkers(o: WorkersOptions): Promise<Workers> {
  const log = o.logger.child({ component: "workers" });
  const deaths = new Counter({ name: "ztunnel_worker_deaths_total", help: "Data-path workers that died and were replaced", registers: [o.registry] });
  const lost = new Counter({ name: "ztunnel_worker_lost_connections_total", help: "Proxied connections a data-path worker held when it died", registers: [o.registry] });
  const slots: Slot[] = [];
  const peerCounters = new SharedArrayBuffer(SHARED_PEER_SLOTS * 4);
  let nextId = 1;
  let stopping = false;

  const post = (s: Slot, m: ToWorker): void => s.worker.postMessage(m);
  const ask = (s: Slot, what: "stats" | "metrics" | "pending"): Promise<unknown> => question(s, (id) => ({ type: "request", id, what }));
  const question = (s: Slot, message: (id: number) => ToWorker): Promise<unknown> =>
    new Promise((resolve) => {
      if (!s.ready) return resolve(undefined);
      const id = nextId++;
      // A worker stuck in a loop never answers: readiness, /metrics and /config_dump go on without it.
      const t = setTimeout(() => {
        s.replies.delete(id);
        resolve(undefined);
      }, ASK_TIMEOUT_MS);
      s.replies.set(id, (v) => {
        clearTimeout(t);
        resolve(v);
      });
      post(s, message(id));
    });

  o.store.onChange((_v, change) => {
    const m: ToWorker = change.kind === "replace" ? { type: "mesh", replace: change.snapshot } : { type: "mesh", apply: change.delta };
    for (const s of slots) post(s, m);
  });

  // A fault for tests: the first workers exit as they take this many connections; their replacements do not.
  const exitAfter = Number(o.env["ZT_TEST_WORKER_EXIT_AFTER"]) || undefined;
  const spawn = (index: number, replacement = false): Promise<Slot> => {
    const live = new SharedArrayBuffer(4);
    const init: WorkerInit = {
      index,
      env: o.env,
      snapshot: o.store.snapshot(),
      certs: held(),
      fdCounters: o.fdCounters,
      peerCounters,
      liveCounter: live,
      receiveBytes: Math.floor(o.receiveBytes / o.count),
      shared: o.shared,
      logLevel: o.logLevel(),
      ...(exitAfter && !replacement ? { exitAfter } : {}),
    };
    const worker = new Worker(new URL("./worker-thread.js", import.meta.url), { workerData: init, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    const slot: Slot = { index, worker, live: new Int32Array(live), ready: false, addresses: {}, replies: new Map(), drained: undefined };
    // In place at once: the mesh changes after `init.snapshot` reach it (queued until it listens).
    slots[index] = slot;
    return new Promise<Slot>((resolve, reject) => {
      worker.on("message", (m: FromWorker) => {
        switch (m.type) {
          case "ready":
            slot.ready = true;
            slot.addresses = m.addresses;
            return resolve(slot);
          case "failed":
            return reject(new ZtError(isErrorCode(m.code) ? m.code : "WORKER_START_FAILED", m.message));
          case "certFetch":
            o.certs.fetch(m.identity).then(
              (c) => post(slot, { type: "certReply", id: m.id, cert: material(c) }),
              (err: unknown) => post(slot, { type: "certReply", id: m.id, error: { code: (err as ZtError).code, message: err instanceof Error ? err.message : String(err) } }),
            );
            return;
          case "reply": {
            const r = slot.replies.get(m.id);
            slot.replies.delete(m.id);
            r?.(m.value);
            return;
          }
          case "drained":
            slot.drained?.();
            return;
        }
      });
      worker.on("error", (err) => {
        if (!slot.ready) reject(new ZtError("WORKER_START_FAILED", `data-path worker ${index} failed to start: ${err.message}`, { cause: err }));
        else log.error({ err, code: "WORKER_DIED", worker: index }, `data-path worker ${index} failed: ${err.message}`);
      });
      worker.on("exit", (code) => {
        for (const r of slot.replies.values()) r(undefined);
        slot.replies.clear();
        slot.drained?.();
        if (!slot.ready) return reject(new ZtError("WORKER_START_FAILED", `data-path worker ${index} exited (code ${code}) before it was ready`));
        if (stopping) return;
        const held = Atomics.load(slot.live, 0);
        deaths.inc();
        lost.inc(held);
        log.error({ code: "WORKER_DIED", worker: index, exitCode: code, connections: held }, `data-path worker ${index} died (exit code ${code}) holding ${held} connection(s); starting a new one`);
        slot.ready = false;
        spawn(index, true).then(
          (fresh) => {
            if (stopping) return void fresh.worker.terminate();
            log.info({ worker: index }, `data-path worker ${index} replaced`);
          },
          (err: unknown) => log.error({ err, code: "WORKER_START_FAILED", worker: index }, `data-path worker ${index} could not be replaced: ${(err as Error).message}`),
        );
      });
    });
  };

  /** The certificates the main thread holds now: a worker starts with them (later ones are pushed as they come). */
  const held = (): CertMaterial[] =>
    o.certs
      .dump()
      .map((d) => o.certs.get(d.identity))
      .filter((c): c is WorkloadCertificate => c !== undefined)
      .map(material);

  try {
    for (let i = 0; i < o.count; i++) await spawn(i);
  } catch (err) {
    stopping = true;
    await Promise.all(slots.map((s) => s.worker.terminate()));
    throw err;
  }

  return {
    addresses() {
      const out: Record<string, Set<string>> = {};
      for (const s of slots) for (const [name, addrs] of Object.entries(s.addresses)) for (const a of addrs) (out[name] ??= new Set()).add(a);
      return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v]]));
    },
    async pending() {
      // Every worker was ready before the agent was; one being replaced is no reason to turn away
      // traffic the others carry (its death is logged and counted).
      const each = await Promise.all(slots.map(async (s) => ((await ask(s, "pending")) as string[] | undefined) ?? []));
      return [...new Set(each.flat())];
    },
    async stats() {
      const each = await Promise.all(slots.map(async (s, worker) => {
        const v = (await ask(s, "stats")) as DataPathStats | null | undefined;
        return v ? { ...v, worker } : undefined;
      }));
      return each.filter((x): x is WorkerStats => x !== undefined);
    },
    async metrics() {
      return (await Promise.all(slots.map((s) => ask(s, "metrics")))).filter((x): x is MetricObjectWithValues<MetricValue<string>>[] => Array.isArray(x));
    },
    live: () => slots.reduce((n, s) => n + Atomics.load(s.live, 0), 0),
    count: () => slots.length,
    async connections(index, page) {
      const s = slots[index];
      if (!s) return undefined;
      const v = await question(s, (id) => ({ type: "connections", id, page }));
      return v === undefined || v === null ? undefined : (v as ConnectionPage);
    },
    certChanged(c) {
      for (const s of slots) post(s, { type: "cert", cert: material(c) });
    },
    setLogLevel(level) {
      for (const s of slots) post(s, { type: "logLevel", level });
    },
    async drain(timeoutMs) {
      stopping = true;
      await Promise.all(
        slots.map(
          (s) =>
            new Promise<void>((resolve) => {
              // One that died meanwhile has nothing left to drain.
              if (!s.ready) return resolve();
              s.drained = resolve;
              post(s, { type: "drain", timeoutMs });
            }),
        ),
      );
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
