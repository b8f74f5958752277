/**
 * One build of the data path and its identity code, loaded from a workspace root at run
 * time (this tree's, or the "before" commit's unpacked and built by handshake.sh), and the
 * in-process topology the handshake benchmark runs on it: the HBONE pool of a client side
 * and the 15008 inbound server of a server side, each with its own certificate manager
 * (as two agents would be), sharing one CA, on loopback addresses 127.213.x.x.
 *
 * Only the public API of @zt/proxy, @zt/identity and @zt/state is used, the same in both
 * builds; the shapes below are the part of it this benchmark needs.
 */
import net from "node:net";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

export const TRUST_DOMAIN = "cluster.local";
const NET = "127.213";
const HBONE_PORT = 15008;
const ECHO_PORT = 8080;

export interface CertSource {
  sign(csrPem: string, identity: string, ttlMs: number): Promise<unknown>;
}
export interface CertManager {
  fetch(identity: string): Promise<unknown>;
  close(): void;
}
interface Pool {
  connect(key: PoolKey, authority: string, headers: Record<string, string>): Promise<{ close(): void; on(ev: "error", f: () => void): void }>;
  close(): void;
}
interface PoolKey {
  srcIdentity: string;
  dstIdentities: string[];
  hboneIp: string;
  hbonePort: number;
  srcIp: string;
}
interface Inbound {
  accept(raw: net.Socket): void;
  close(): void;
}

export interface Impl {
  readonly label: string;
  readonly identity: {
    loadOrCreateCa(o: { dir: string; trustDomain: string }): Promise<CertSource>;
    createCertManager(o: { source: CertSource; ttlMs: number }): CertManager;
    createKeyAndCsr(identity: string): Promise<{ keyPem: string; csrPem: string }>;
  };
  readonly proxy: {
    createHbonePool(o: Record<string, unknown>): Pool;
    createInboundServer(ctx: Record<string, unknown>): Inbound;
    createProxyListener(ctx: Record<string, unknown>, name: "hbone", cb: (s: net.Socket) => void): net.Server;
    createReceiveBudget(o: { streamWindow: number; sessionBytes: number; totalBytes: number }): unknown;
    plainDialer: unknown;
    unlimitedFds: unknown;
  };
  readonly state: {
    createMeshStore(snapshot: unknown): unknown;
    parseLocalConfig(text: string, source: string, defaults: { trustDomain: string; clusterId: string }): unknown;
  };
  readonly logger: unknown;
}

export async function loadImpl(root: string, label: string): Promise<Impl> {
  const load = (pkg: string): Promise<unknown> => import(pathToFileURL(path.join(root, "packages", pkg, "dist", "index.js")).href);
  const [identity, proxy, state] = await Promise.all([load("identity"), load("proxy"), load("state")]);
  // pino as the proxy package of that build resolves it.
  const pino = createRequire(path.join(root, "packages", "proxy", "package.json"))("pino") as (o: { level: string }) => unknown;
  return { label, identity: identity as Impl["identity"], proxy: proxy as Impl["proxy"], state: state as Impl["state"], logger: pino({ level: "silent" }) };
}

export const srcIp = (i: number): string => `${NET}.1.${i + 1}`;
export const dstIp = (j: number): string => `${NET}.2.${j + 1}`;
export const srcId = (i: number): string => `spiffe://${TRUST_DOMAIN}/ns/bench/sa/src-${i}`;
export const dstId = (j: number): string => `spiffe://${TRUST_DOMAIN}/ns/bench/sa/dst-${j}`;

function workloadsYaml(sources: number, dests: number): string {
  const w = (name: string, ip: string): string =>
    `- {name: ${name}, namespace: bench, serviceAccount: ${name}, workloadIps: ["${ip}"], protocol: HBONE, node: node-a}`;
  const lines = ["workloads:"];
  for (let i = 0; i < sources; i++) lines.push(w(`src-${i}`, srcIp(i)));
  for (let j = 0; j < dests; j++) lines.push(w(`dst-${j}`, dstIp(j)));
  return lines.join("\n") + "\n";
}

/** Echo servers on every destination's IP:8080, shared by every build and round. */
export async function startEchoes(dests: number): Promise<{ close(): void }> {
  const servers: net.Server[] = [];
  for (let j = 0; j < dests; j++) {
    const s = net.createServer((c) => {
      c.on("error", () => {});
      c.pipe(c);
    });
    await new Promise<void>((resolve, reject) => s.once("error", reject).listen(ECHO_PORT, dstIp(j), () => resolve()));
    servers.push(s);
  }
  return { close: () => servers.forEach((s) => s.close()) };
}

/** A CA for one build, generated into a temporary directory (not part of any measure). */
export async function tempCa(impl: Impl): Promise<{ ca: CertSource; remove(): void }> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-bench-ca-"));
  const ca = await impl.identity.loadOrCreateCa({ dir: path.join(dir, "cacerts"), trustDomain: TRUST_DOMAIN });
  return { ca, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Topology {
  /** One CONNECT from source i to destination j through the pool; resolves after the 200. */
  connect(i: number, j: number): Promise<void>;
  /** A fresh pool (nothing pooled), the certificate managers kept. */
  resetPool(): void;
  readonly faults: string[];
  close(): Promise<void>;
}

/**
 * The client side's pool and the server side's inbound listeners (one per destination IP),
 * each side with a fresh certificate manager: the first connect of each source identity and
 * of each destination issues its certificate.
 */
export async function startTopology(impl: Impl, ca: CertSource, sources: number, dests: number): Promise<Topology> {
  const { proxy, state, identity } = impl;
  const faults: string[] = [];
  const store = state.createMeshStore(state.parseLocalConfig(workloadsYaml(sources, dests), "bench.yaml", { trustDomain: TRUST_DOMAIN, clusterId: "bench" }));
  const receiveBudget = proxy.createReceiveBudget({ streamWindow: 4 << 20, sessionBytes: 16 << 20, totalBytes: 1 << 30 });
  const clientCerts = identity.createCertManager({ source: ca, ttlMs: 3_600_000 });
  const serverCerts = identity.createCertManager({ source: ca, ttlMs: 3_600_000 });
  const newPool = (): Pool =>
    proxy.createHbonePool({ receiveBudget, fds: proxy.unlimitedFds, certs: clientCerts, logger: impl.logger, maxStreamsPerConnection: 100, idleTimeoutMs: 300_000, streamWindowSize: 4 << 20, connectionWindowSize: 16 << 20 });
  let pool = newPool();
  const ctx: Record<string, unknown> = {
    nodeName: "node-a",
    trustDomain: TRUST_DOMAIN,
    outboundPolicy: "ALLOW_ANY",
    hbonePort: HBONE_PORT,
    ownPorts: new Set([15000, 15001, 15006, HBONE_PORT, 15020, 15021, 15080]),
    isLocalAddress: (ip: string) => ip.startsWith("127."),
    store,
    certs: serverCerts,
    pool,
    observer: { opened: () => {}, closed: () => {}, dropped: () => {} },
    logger: impl.logger,
    streamWindowSize: 4 << 20,
    connectionWindowSize: 16 << 20,
    connectTimeoutMs: 10_000,
    dialer: proxy.plainDialer,
    live: new Set(),
    receiveBudget,
    fds: proxy.unlimitedFds,
    onFault: (where: string, err: unknown) => faults.push(`${where}: ${String(err)}`),
  };
  const inbound = proxy.createInboundServer(ctx);
  const listeners: net.Server[] = [];
  for (let j = 0; j < dests; j++) {
    const l = proxy.createProxyListener(ctx, "hbone", (s) => inbound.accept(s));
    await new Promise<void>((resolve, reject) => l.once("error", reject).listen(HBONE_PORT, dstIp(j), () => resolve()));
    listeners.push(l);
  }
  return {
    async connect(i, j) {
      const stream = await pool.connect(
        { srcIdentity: srcId(i), dstIdentities: [dstId(j)], hboneIp: dstIp(j), hbonePort: HBONE_PORT, srcIp: srcIp(i) },
        `${dstIp(j)}:${ECHO_PORT}`,
        {},
      );
      stream.on("error", () => {});
      stream.close();
    },
    resetPool() {
      pool.close();
      pool = newPool();
      ctx["pool"] = pool;
    },
    faults,
    async close() {
      pool.close();
      inbound.close();
      await Promise.all(listeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve()))));
      clientCerts.close();
      serverCerts.close();
    },
  };
}
