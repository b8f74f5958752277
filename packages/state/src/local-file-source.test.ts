import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ZtError } from "@zt/errors";
import { ConfigError } from "./errors.js";
import { loadLocalConfig, type LocalConfigWatcher, openLocalConfig, watchLocalConfig } from "./local-file-source.js";
import type { ParseJob } from "./local-file-job.js";
import type { MeshSnapshot } from "./types.js";

/** fs.watch, wrapped to track which watchers are still open. */
const openWatchers = vi.hoisted(() => new Set<object>());
vi.mock(import("node:fs"), async (importOriginal) => {
  const fs = await importOriginal();
  const watch = ((...args: Parameters<typeof fs.watch>) => {
    const w = fs.watch(...args);
    openWatchers.add(w);
    const close = w.close.bind(w);
    w.close = () => {
      openWatchers.delete(w);
      close();
    };
    return w;
  }) as typeof fs.watch;
  return { ...fs, watch, default: { ...fs, watch } };
});

/** Every read of the file (a worker job), by mode. */
const jobs = vi.hoisted(() => [] as ParseJob["mode"][]);
/** While set, a parse job fails as a parser that crashed would (no hash: the file's bytes never came back). */
const parser = vi.hoisted(() => ({ crashes: false }));
vi.mock(import("./local-file-job.js"), async (importOriginal) => {
  const m = await importOriginal();
  const { ZtError: Err } = await import("@zt/errors");
  const crashed = { kind: "failed", hash: undefined, error: new Err("CONFIG_PARSE_FAILED", "parsing the file needed more than 256 MB of memory; the file is too complex") } as const;
  return {
    ...m,
    runParseJob: (job: ParseJob) => {
      jobs.push(job.mode);
      return parser.crashes && job.mode === "parse" ? { result: Promise.resolve(crashed), cancel: () => undefined } : m.runParseJob(job);
    },
  };
});

const D = { trustDomain: "cluster.local", clusterId: "c1" };
const wl = (name: string, ip: string) => `workloads:\n- {name: ${name}, namespace: d, workloadIps: ["${ip}"]}\n`;

let dir: string;
let watcher: LocalConfigWatcher | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zt-state-"));
});
afterEach(async () => {
  watcher?.close();
  watcher = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Writes via a temp file and rename, the way editors and config tools do. */
async function atomicWrite(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${Math.random().toString(36).slice(2)}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

function watchCollect(path: string, opts: { debounceMs?: number; pollMs?: number; maxBytes?: number } = { debounceMs: 20 }) {
  const snaps: MeshSnapshot[] = [];
  const errors: ZtError[] = [];
  const unchanged: number[] = [];
  watcher = watchLocalConfig(path, D, { onSnapshot: (s) => snaps.push(s), onError: (e) => errors.push(e), onUnchanged: () => unchanged.push(snaps.length) }, opts);
  return { snaps, errors, unchanged, w: watcher };
}

const names = (s: MeshSnapshot | undefined) => s?.workloads.map((w) => w.name);

describe("loadLocalConfig", () => {
  it("loads and parses a file", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    expect(names(await loadLocalConfig(path, D))).toEqual(["a"]);
  });

  it("reports an unreadable file with its path and errno", async () => {
    const path = join(dir, "missing.yaml");
    const err = await loadLocalConfig(path, D).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZtError);
    expect(err).toMatchObject({ code: "CONFIG_FILE_UNREADABLE" });
    expect((err as ZtError).message).toContain(path);
    expect((err as ZtError).message).toContain("ENOENT");
  });

  it("reports a malformed file as a ConfigError naming the file", async () => {
    const path = join(dir, "bad.yaml");
    await writeFile(path, "workloads: [{name: a}]\n");
    const err = await loadLocalConfig(path, D).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems[0]?.source).toBe(path);
  });
});

describe("openLocalConfig", () => {
  it("watches from exactly the content it loaded: no second read for a baseline, and the next change is reported", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const before = jobs.length;
    const snaps: MeshSnapshot[] = [];
    const opened = await openLocalConfig(path, D, { onSnapshot: (s) => snaps.push(s), onError: () => undefined }, { debounceMs: 10_000, pollMs: 60_000 });
    watcher = opened.watcher;
    expect(names(opened.snapshot)).toEqual(["a"]);
    await watcher.reload();
    expect(jobs.slice(before)).toEqual(["parse"]);
    expect(snaps).toEqual([]);
    await atomicWrite(path, wl("b", "10.0.0.2"));
    await watcher.reload();
    expect(names(snaps[0])).toEqual(["b"]);
  });
});

describe("the size cap", () => {
  it("refuses a file over the cap at load, naming the file, its size and the cap", async () => {
    const path = join(dir, "big.yaml");
    const text = `${wl("a", "10.0.0.1")}# ${"x".repeat(3000)}\n`;
    await writeFile(path, text);
    const err = await loadLocalConfig(path, D, { maxBytes: 2048 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CONFIG_FILE_TOO_LARGE" });
    expect((err as ZtError).message).toContain(path);
    expect((err as ZtError).message).toContain(`(${Buffer.byteLength(text)} bytes)`);
    expect((err as ZtError).message).toContain("cap of 2 KiB (2048 bytes)");
    expect(names(await loadLocalConfig(path, D, { maxBytes: 4096 }))).toEqual(["a"]);
  });

  it("a reload over the cap is refused once, unread, and the next good file is taken", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, errors, w } = watchCollect(path, { debounceMs: 10_000, pollMs: 60_000, maxBytes: 2048 });
    await w.reload();
    const before = jobs.length;
    await atomicWrite(path, `${wl("b", "10.0.0.2")}# ${"x".repeat(3000)}\n`);
    await w.reload();
    await w.reload();
    expect(errors.map((e) => e.code)).toEqual(["CONFIG_FILE_TOO_LARGE"]);
    expect(jobs.length).toBe(before);
    await atomicWrite(path, wl("c", "10.0.0.3"));
    await w.reload();
    expect(names(snaps.at(-1))).toEqual(["c"]);
  });
});

describe("watchLocalConfig", () => {
  it("polls with stat only: an unchanged file is not read again", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, w } = watchCollect(path, { debounceMs: 60_000, pollMs: 20 });
    await w.reload();
    const before = jobs.length;
    await new Promise((r) => setTimeout(r, 300)); // many polls
    await w.reload();
    expect(jobs.length).toBe(before);
    await atomicWrite(path, wl("b", "10.0.0.2"));
    await vi.waitFor(() => expect(snaps).toHaveLength(1), { timeout: 5000, interval: 10 });
    expect(jobs.length).toBe(before + 1);
  });

  it("a parser that crashed on a file is not started again for it at every poll, only once the file changes", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, errors, w } = watchCollect(path, { debounceMs: 60_000, pollMs: 20 });
    await w.reload();
    parser.crashes = true;
    try {
      const before = jobs.length;
      await atomicWrite(path, wl("b", "10.0.0.2"));
      await vi.waitFor(() => expect(errors.map((e) => e.code)).toEqual(["CONFIG_PARSE_FAILED"]), { timeout: 5000, interval: 10 });
      await new Promise((r) => setTimeout(r, 300)); // many polls
      expect(jobs.slice(before)).toEqual(["parse"]);
    } finally {
      parser.crashes = false;
    }
    await atomicWrite(path, wl("c", "10.0.0.3"));
    await vi.waitFor(() => expect(names(snaps.at(-1))).toEqual(["c"]), { timeout: 5000, interval: 10 });
  });

  it("tells the caller when a rejected edit is undone (the file is back to the state it holds)", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, errors, unchanged, w } = watchCollect(path, { debounceMs: 10_000, pollMs: 60_000 });
    await w.reload();
    await atomicWrite(path, "workloads: [{name: a}]\n");
    await w.reload();
    expect(errors).toHaveLength(1);
    await atomicWrite(path, wl("a", "10.0.0.1"));
    await w.reload();
    expect(unchanged).toEqual([0]);
    expect(snaps).toEqual([]);
  });

  it("picks up an atomic rename and keeps the last good state on a broken write", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, errors, w } = watchCollect(path);
    await w.reload(); // baseline: unchanged content is not reported
    expect(snaps).toHaveLength(0);

    await atomicWrite(path, wl("b", "10.0.0.2"));
    await vi.waitFor(() => expect(snaps).toHaveLength(1), { timeout: 5000, interval: 10 });
    expect(names(snaps[0])).toEqual(["b"]);

    await atomicWrite(path, "workloads:\n- {name: c, namespace: d, workloadIps: [\"nope\"]}\n");
    await vi.waitFor(() => expect(errors).toHaveLength(1), { timeout: 5000, interval: 10 });
    expect(errors[0]).toBeInstanceOf(ConfigError);
    expect(errors[0]?.message).toContain(path);
    expect(errors[0]?.message).toContain("workloads[0].workloadIps[0]");
    expect(snaps).toHaveLength(1);

    await w.reload(); // the same broken content is reported once
    expect(errors).toHaveLength(1);

    await atomicWrite(path, wl("d", "10.0.0.4"));
    await vi.waitFor(() => expect(snaps).toHaveLength(2), { timeout: 5000, interval: 10 });
    expect(names(snaps[1])).toEqual(["d"]);
  });

  it("follows a Kubernetes ConfigMap symlink swap", async () => {
    await mkdir(join(dir, "..v1"));
    await writeFile(join(dir, "..v1", "config.yaml"), wl("a", "10.0.0.1"));
    await symlink("..v1", join(dir, "..data"));
    await symlink(join("..data", "config.yaml"), join(dir, "config.yaml"));
    const { snaps, errors, w } = watchCollect(join(dir, "config.yaml"));
    await w.reload();

    await mkdir(join(dir, "..v2"));
    await writeFile(join(dir, "..v2", "config.yaml"), wl("b", "10.0.0.2"));
    await symlink("..v2", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    await rm(join(dir, "..v1"), { recursive: true });
    await vi.waitFor(() => expect(snaps).toHaveLength(1), { timeout: 5000, interval: 10 });
    expect(names(snaps[0])).toEqual(["b"]);
    expect(errors).toEqual([]);
  });

  it("reports a vanished file once, then recovers", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, errors, w } = watchCollect(path, { debounceMs: 10_000, pollMs: 60_000 });
    await w.reload();
    await unlink(path);
    await w.reload();
    await w.reload();
    expect(errors.map((e) => e.code)).toEqual(["CONFIG_FILE_UNREADABLE"]);
    await writeFile(path, wl("a", "10.0.0.1"));
    await w.reload(); // back to the last good content: nothing new to apply
    expect(snaps).toHaveLength(0);
    await writeFile(path, wl("b", "10.0.0.2"));
    await w.reload();
    expect(names(snaps[0])).toEqual(["b"]);
  });

  it("falls back to polling", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const { snaps, w } = watchCollect(path, { debounceMs: 60_000, pollMs: 30 });
    await w.reload();
    await writeFile(path, wl("b", "10.0.0.2"));
    await vi.waitFor(() => expect(snaps).toHaveLength(1), { timeout: 5000, interval: 10 });
  });

  it("emits the initial content when asked", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, wl("a", "10.0.0.1"));
    const snaps: MeshSnapshot[] = [];
    watcher = watchLocalConfig(path, D, { onSnapshot: (s) => snaps.push(s), onError: () => undefined }, { emitInitial: true });
    await watcher.reload();
    expect(names(snaps[0])).toEqual(["a"]);
  });

  it("close() stops callbacks and releases its handles", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    try {
      const path = join(dir, "config.yaml");
      await writeFile(path, wl("a", "10.0.0.1"));
      const openBefore = openWatchers.size;
      const { snaps, errors, w } = watchCollect(path, { debounceMs: 5, pollMs: 10 });
      await w.reload();
      expect(openWatchers.size).toBe(openBefore + 1);
      expect(vi.getTimerCount()).toBeGreaterThan(0);
      w.close();
      expect(openWatchers.size).toBe(openBefore);
      expect(vi.getTimerCount()).toBe(0);
      await atomicWrite(path, wl("b", "10.0.0.2"));
      await vi.advanceTimersByTimeAsync(100);
      await w.reload();
      expect(snaps).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });
});
