import net from "node:net";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A port that was free a moment ago on `host` (the OS picks it). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen({ host, port: 0 }, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Reject after `ms`; a value that arrives late is handed to `late` (to close it). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, late?: (v: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const t = setTimeout(() => {
      done = true;
      reject(new Error(`${what}: timed out after ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        if (done) return late?.(v);
        done = true;
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** The p-th percentile (0..100) of the first n values (sorted in place). */
export function percentile(values: Float64Array, n: number, p: number): number {
  if (n === 0) return NaN;
  const v = values.subarray(0, n).sort();
  const i = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
  return v[i]!;
}

/** The soft limit on open files of this process, from /proc/self/limits. */
export function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m || m[1] === "unlimited" ? 1 << 20 : Number(m[1]);
}

export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Replace one benchmark's section of bench/RESULTS.md: `section` is its text, markers
 * included (`<!-- name:begin -->` … `<!-- name:end -->`). A quick run (BENCH_QUICK=1)
 * writes bench/out/RESULTS.<name>.quick.md instead and leaves RESULTS.md alone.
 */
export function writeResultsSection(name: string, section: string, quick: boolean): string {
  const benchDir = fileURLToPath(new URL("../", import.meta.url));
  mkdirSync(`${benchDir}out`, { recursive: true });
  const file = quick ? `${benchDir}out/RESULTS.${name}.quick.md` : `${benchDir}RESULTS.md`;
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const kept = text.replace(new RegExp(`\\n*<!-- ${name}:begin -->[\\s\\S]*<!-- ${name}:end -->\\n*`), "\n");
  writeFileSync(file, `${kept.trimEnd()}\n\n${section}\n`.trimStart());
  return file;
}


/** What each bench section says of the agents: how many data-path workers each ran (harness and benches pass ZTUNNEL_WORKER_THREADS through). */
export function agentWorkers(): string {
  const n = process.env["ZTUNNEL_WORKER_THREADS"];
  return `ZTUNNEL_WORKER_THREADS=${n ?? "2"} data-path workers per agent${n ? "" : " (the agents' default)"}`;
}
