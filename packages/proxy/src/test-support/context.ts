import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { createCertManager, loadOrCreateCa } from "@zt/identity";
import { createMeshStore, parseLocalConfig } from "@zt/state";
import type { ProxyContext } from "../context.js";
import { plainDialer } from "../dial.js";
import { createHbonePool, type PoolOptions } from "../pool.js";
import { createReceiveBudget } from "../receive-budget.js";
import { unlimitedFds } from "../fd-budget.js";
import type { ConnectionRecord } from "../types.js";

/** A real in-process proxy context (store, CA, certificates, pool) with a recording observer. */
export async function testContext(yaml: string, over: Partial<ProxyContext> = {}, pool: Partial<PoolOptions> = {}): Promise<ProxyContext & { closed: ConnectionRecord[]; dispose(): void }> {
  const logger = pino({ level: "silent" });
  const store = createMeshStore(parseLocalConfig(yaml, "test.yaml", { trustDomain: "cluster.local", clusterId: "c1" }));
  const caRoot = mkdtempSync(path.join(tmpdir(), "zt-proxy-"));
  const ca = await loadOrCreateCa({ dir: path.join(caRoot, "ca"), trustDomain: "cluster.local" });
  const certs = createCertManager({ source: ca, ttlMs: 3_600_000 });
  const receiveBudget = createReceiveBudget({ streamWindow: 4 << 20, sessionBytes: 16 << 20, totalBytes: 256 << 20 });
  const hbonePool = createHbonePool({ receiveBudget, fds: unlimitedFds, certs, logger, maxStreamsPerConnection: 100, idleTimeoutMs: 300_000, streamWindowSize: 4 << 20, connectionWindowSize: 16 << 20, ...pool });
  const closed: ConnectionRecord[] = [];
  return {
    nodeName: "node-a",
    trustDomain: "cluster.local",
    outboundPolicy: "ALLOW_ANY",
    hbonePort: 15008,
    ownPorts: new Set([15000, 15001, 15006, 15008, 15020, 15021, 15080]),
    isLocalAddress: (ip) => ip.startsWith("127."),
    store,
    certs,
    pool: hbonePool,
    observer: { opened: () => {}, closed: (r) => closed.push(r), dropped: () => {} },
    logger,
    streamWindowSize: 4 << 20,
    connectionWindowSize: 16 << 20,
    connectTimeoutMs: 2000,
    dialer: plainDialer,
    live: new Set(),
    connecting: new Set(),
    receiveBudget,
    fds: unlimitedFds,
    onFault: (where, err) => {
      throw new Error(`fault in ${where}: ${String(err)}`);
    },
    ...over,
    closed,
    dispose() {
      hbonePool.close();
      certs.close();
      rmSync(caRoot, { recursive: true, force: true });
    },
  };
}
