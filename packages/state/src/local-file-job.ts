/**
 * Reading and parsing the local config file off the caller's thread: each job runs in a
 * short-lived worker thread (local-file-worker.ts), which reads the file (never more than
 * `maxBytes`), hashes it, and parses and validates it unless its hash is one the caller
 * already knows. The main thread receives the snapshot by structured clone (Maps
 * included) — never the text. The worker's heap is capped in proportion to `maxBytes`,
 * so a pathological file fails the job instead of swelling the agent, and it is all
 * given back when the worker exits.
 */
import { Worker } from "node:worker_threads";
import type { ErrorCode } from "@zt/errors";
import { ZtError } from "@zt/errors";
import { ConfigError, type ConfigProblem } from "./errors.js";
import type { LocalConfigDefaults } from "./local-file.js";
import type { MeshSnapshot } from "./types.js";

export interface ParseJob {
  /** Absolute path to read. */
  readonly path: string;
  /** How the file is named in messages and problems (the path as configured). */
  readonly source: string;
  readonly defaults: LocalConfigDefaults;
  readonly maxBytes: number;
  /** "hash": read and hash only. "parse": also parse, unless the hash is in `knownHashes`. */
  readonly mode: "hash" | "parse";
  readonly knownHashes: readonly string[];
}

export type JobResult =
  | { readonly kind: "hashed"; readonly hash: string }
  | { readonly kind: "known"; readonly hash: string }
  | { readonly kind: "parsed"; readonly hash: string; readonly snapshot: MeshSnapshot }
  | { readonly kind: "failed"; readonly hash: string | undefined; readonly error: ZtError };

/** What the worker posts back (errors as plain data: a class does not survive structured clone). */
export type WorkerReply =
  | { readonly kind: "hashed" | "known"; readonly hash: string }
  | { readonly kind: "parsed"; readonly hash: string; readonly snapshot: MeshSnapshot }
  | { readonly kind: "failed"; readonly hash: string | undefined; readonly code: ErrorCode; readonly message: string; readonly problems?: readonly ConfigProblem[] };

// From src/ (tests, with the "source" condition) as from dist/: the worker always runs built.
const WORKER = new URL("../dist/local-file-worker.js", import.meta.url);
const MiB = 1024 * 1024;

/** Parsing takes ~110 bytes of heap per byte of YAML; leave room for that and a little more. */
export function workerHeapMb(maxBytes: number): number {
  return Math.max(256, Math.ceil((maxBytes / MiB) * 200));
}

export interface RunningJob {
  readonly result: Promise<JobResult>;
  /** Stops the worker; `result` then resolves as failed (nobody should be waiting for it). */
  cancel(): void;
}

export function runParseJob(job: ParseJob): RunningJob {
  const heapMb = workerHeapMb(job.maxBytes);
  let worker: Worker;
  try {
    worker = new Worker(WORKER, { workerData: job, execArgv: [], resourceLimits: { maxOldGenerationSizeMb: heapMb } });
  } catch (e) {
    const error = new ZtError("CONFIG_PARSE_FAILED", `cannot start the parser for ${job.source}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    return { result: Promise.resolve({ kind: "failed", hash: undefined, error }), cancel: () => undefined };
  }
  const result = new Promise<JobResult>((resolve) => {
    let done = false;
    const finish = (r: JobResult): void => {
      if (done) return;
      done = true;
      resolve(r);
    };
    const failed = (message: string, cause?: unknown): void =>
      finish({ kind: "failed", hash: undefined, error: new ZtError("CONFIG_PARSE_FAILED", message, { cause }) });
    worker.once("message", (m: WorkerReply) => finish(fromReply(m)));
    worker.once("error", (e: Error & { code?: string }) => {
      if (e.code === "ERR_WORKER_OUT_OF_MEMORY") failed(`parsing ${job.source} needed more than ${heapMb} MB of memory; the file is too complex`, e);
      else failed(`parsing ${job.source} failed: ${e.message}`, e);
    });
    worker.once("exit", (code) => failed(`the parser of ${job.source} stopped (exit code ${code}) without an answer`));
  });
  return { result, cancel: () => void worker.terminate() };
}

function fromReply(m: WorkerReply): JobResult {
  if (m.kind !== "failed") return m;
  const error = m.problems ? new ConfigError(m.problems) : new ZtError(m.code, m.message);
  return { kind: "failed", hash: m.hash, error };
}
