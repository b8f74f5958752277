/**
 * Worker thread of one parse job (see local-file-job.ts): read at most `maxBytes` of the
 * file, hash it, parse and validate it unless the hash is known, post the outcome, exit.
 */
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { ZtError } from "@zt/errors";
import { ConfigError } from "./errors.js";
import type { ParseJob, WorkerReply } from "./local-file-job.js";
import { parseLocalConfig } from "./local-file.js";
import { tooLarge, unreadable } from "./local-file-errors.js";

function run(job: ParseJob): WorkerReply {
  let bytes: Buffer;
  try {
    bytes = readBounded(job);
  } catch (e) {
    const err = e instanceof ZtError ? e : unreadable(job.source, e);
    return { kind: "failed", hash: undefined, code: err.code, message: err.message };
  }
  const hash = createHash("sha256").update(bytes).digest("hex");
  if (job.mode === "hash") return { kind: "hashed", hash };
  if (job.knownHashes.includes(hash)) return { kind: "known", hash };
  try {
    return { kind: "parsed", hash, snapshot: parseLocalConfig(bytes.toString("utf8"), job.source, job.defaults) };
  } catch (e) {
    if (e instanceof ConfigError) return { kind: "failed", hash, code: e.code, message: e.message, problems: e.problems };
    const err = e instanceof ZtError ? e : new ZtError("CONFIG_INVALID", `${job.source}: ${e instanceof Error ? e.message : String(e)}`);
    return { kind: "failed", hash, code: err.code, message: err.message };
  }
}

/** The whole file, refusing one over the cap (also when it grows while being read). */
function readBounded(job: ParseJob): Buffer {
  const fd = openSync(job.path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size > job.maxBytes) throw tooLarge(job.source, size, job.maxBytes);
    const buf = Buffer.allocUnsafe(size + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) throw tooLarge(job.source, n, job.maxBytes);
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > job.maxBytes) throw tooLarge(job.source, n, job.maxBytes);
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

parentPort?.postMessage(run(workerData as ParseJob));
