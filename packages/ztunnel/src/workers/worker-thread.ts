/**
 * A data-path worker: its own listeners, pool and telemetry (one access-log line per
 * connection it carries, its own metrics registry that the main thread aggregates), on a
 * replica of the mesh and of the certificates that the main thread keeps up to date.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Registry } from "prom-client";
import { isErrorCode, ZtError } from "@zt/errors";
import { toWorkloadCertificate, type CertManager, type WorkloadCertificate } from "@zt/identity";
import { useSpliceBuffers } from "@zt/proxy";
import { createMeshStore } from "@zt/state";
import { loadConfig } from "../config.js";
import { startDataPath, type DataPath } from "../data-path.js";
import { createFaults } from "../faults.js";
import { planFds } from "../fd-limit.js";
import { createLocalAddresses } from "../local-addresses.js";
import { createLogger, parseLogLevel, pinoLevel } from "../logging.js";
import { createMemoryReducer } from "../memory-reducer.js";
import { dataPathSockets } from "../sockets.js";
import { captureParams } from "../redirect.js";
import type { CertMaterial, FromWorker, ToWorker, WorkerInit } from "./protocol.js";

useSpliceBuffers();
const port = parentPort!;
const init = workerData as WorkerInit;
const send = (m: FromWorker): void => port.postMessage(m);

const config = loadConfig(init.env);
const logger = createLogger(config).child({ worker: init.index });
logger.level = init.logLevel;
const registry = new Registry();
const faults = createFaults(logger, registry);
faults.install();
const store = createMeshStore(init.snapshot);
const live = new Int32Array(init.liveCounter);
const certs = replicaCerts(init.certs);
const local = createLocalAddresses(faults.report);
let dataPath: DataPath | undefined;

port.on("message", (m: ToWorker) => {
  try {
    onMessage(m);
  } catch (err) {
    faults.report(`worker message ${m.type}`, err);
  }
});

function onMessage(m: ToWorker): void {
  switch (m.type) {
    case "mesh":
      if ("replace" in m) store.replace(m.replace);
      else store.apply(m.apply);
      return;
    case "cert":
      certs.put(m.cert);
      return;
    case "certReply":
      certs.answer(m.id, m.cert, m.error);
      return;
    case "logLevel": {
      const level = parseLogLevel(m.level);
      if (level) logger.level = pinoLevel(level);
      return;
    }
    case "request":
      void answer(m.id, m.what);
      return;
    case "connections":
      send({ type: "reply", id: m.id, value: dataPath?.connections(m.page) ?? { items: [], more: false, held: 0 } });
      return;
    case "drain":
      void (async () => {
        await dataPath?.drain(m.timeoutMs);
        reducer.close();
        certs.close();
        local.close();
        faults.uninstall();
        // The last access-log lines reach stdout before the main thread ends this worker.
        await new Promise<void>((r) => logger.flush(() => r()));
        send({ type: "drained" });
      })();
      return;
  }
}

async function answer(id: number, what: "stats" | "metrics" | "pending"): Promise<void> {
  let value: unknown;
  if (what === "metrics") value = await registry.getMetricsAsJSON();
  else if (what === "stats") value = dataPath?.stats() ?? null;
  else value = dataPath?.pending() ?? ["listeners"];
  send({ type: "reply", id, value });
}

const reducer = createMemoryReducer(() => Atomics.load(live, 0));
let taken = 0;

try {
  dataPath = await startDataPath({
    config,
    store,
    certs,
    logger,
    registry,
    fds: planFds(undefined, new Int32Array(init.fdCounters)).budget,
    receiveBytes: init.receiveBytes,
    peerCounts: new Int32Array(init.peerCounters),
    logBinds: init.index === 0,
    sockets: dataPathSockets(config, local.has, config.redirectMode === "tproxy" ? captureParams(config).agentMark : 0, init.shared),
    isLocalAddress: local.has,
    onFault: faults.report,
    onLive: (delta) => {
      Atomics.add(live, 0, delta);
      if (delta > 0 && init.exitAfter !== undefined && ++taken >= init.exitAfter) process.exit(70);
    },
  });
  send({ type: "ready", addresses: dataPath.addresses() });
} catch (err) {
  send({ type: "failed", code: err instanceof ZtError ? err.code : "WORKER_START_FAILED", message: err instanceof Error ? err.message : String(err) });
}

/**
 * The certificates of the main thread's manager, as this worker uses them: the ones it was
 * given (the node's workloads, kept current by the main thread's pushes) and, for any
 * other identity, one fetched from the main thread once and then cached.
 */
function replicaCerts(initial: readonly CertMaterial[]): CertManager & { put(c: CertMaterial): void; answer(id: number, c?: CertMaterial, e?: { code?: string; message: string }): void } {
  const held = new Map<string, WorkloadCertificate>();
  const waiting = new Map<number, { resolve(c: WorkloadCertificate): void; reject(e: Error): void }>();
  const inflight = new Map<string, Promise<WorkloadCertificate>>();
  let next = 1;
  let closed = false;
  const build = (c: CertMaterial): WorkloadCertificate => toWorkloadCertificate(c.identity, c.keyPem, { certChain: c.certChain, roots: c.roots });
  const usable = (c: WorkloadCertificate | undefined): WorkloadCertificate | undefined => (c && c.notAfter.getTime() > Date.now() ? c : undefined);
  for (const c of initial) held.set(c.identity, build(c));
  return {
    put: (c) => void held.set(c.identity, build(c)),
    answer(id, c, e) {
      const w = waiting.get(id);
      waiting.delete(id);
      if (!w) return;
      if (c) {
        const cert = build(c);
        held.set(c.identity, cert);
        w.resolve(cert);
      } else w.reject(new ZtError(e?.code && isErrorCode(e.code) ? e.code : "CERT_ISSUE_FAILED", e?.message ?? "no certificate"));
    },
    setWanted: () => {},
    get: (identity) => usable(held.get(identity)),
    fetch(identity) {
      const have = usable(held.get(identity));
      if (have) return Promise.resolve(have);
      if (closed) return Promise.reject(new ZtError("CERT_MANAGER_CLOSED", "the worker is stopping"));
      let p = inflight.get(identity);
      if (!p) {
        const id = next++;
        p = new Promise<WorkloadCertificate>((resolve, reject) => waiting.set(id, { resolve, reject })).finally(() => inflight.delete(identity));
        inflight.set(identity, p);
        send({ type: "certFetch", id, identity });
      }
      return p;
    },
    ready: () => true,
    pending: () => [],
    dump: () => [],
    close() {
      closed = true;
    },
  };
}
