/**
 * What the main thread and a data-path worker say to each other (structured clone over
 * the worker's port). The main thread owns discovery, certificates, node rules and the
 * control ports; a worker owns its listeners and pool, and keeps a replica of the mesh
 * and of the certificates it uses.
 */
import type { MeshDelta, MeshSnapshot } from "@zt/state";
import type { ConnectionPageRequest } from "../connection-pages.js";

/** A certificate as it crosses threads: what toWorkloadCertificate needs to rebuild it. */
export interface CertMaterial {
  readonly identity: string;
  readonly keyPem: string;
  readonly certChain: string[];
  readonly roots: string[];
}

export interface WorkerInit {
  readonly index: number;
  /** The environment the configuration is read from (the worker reads it as the main thread did). */
  readonly env: Record<string, string | undefined>;
  readonly snapshot: MeshSnapshot;
  readonly certs: CertMaterial[];
  /** FD_BUDGET_SLOTS Int32 slots: the process's one descriptor budget. */
  readonly fdCounters: SharedArrayBuffer;
  /** SHARED_PEER_SLOTS Int32 slots: the per-identity HBONE caps, across the workers. */
  readonly peerCounters: SharedArrayBuffer;
  /** One Int32: the proxied connections this worker holds (read by the main thread when it dies). */
  readonly liveCounter: SharedArrayBuffer;
  readonly receiveBytes: number;
  /** Several workers bind each listener (SO_REUSEPORT). */
  readonly shared: boolean;
  readonly logLevel: string;
  /** A fault for tests (ZT_TEST_WORKER_EXIT_AFTER): exit (code 70) on taking this many proxied connections. */
  readonly exitAfter?: number;
}

export type ToWorker =
  | { readonly type: "mesh"; readonly replace: MeshSnapshot }
  | { readonly type: "mesh"; readonly apply: MeshDelta }
  | { readonly type: "cert"; readonly cert: CertMaterial }
  | { readonly type: "certReply"; readonly id: number; readonly cert?: CertMaterial; readonly error?: { code?: string; message: string } }
  | { readonly type: "logLevel"; readonly level: string }
  | { readonly type: "request"; readonly id: number; readonly what: "stats" | "metrics" | "pending" }
  /** A page of the connections it holds (answered with a ConnectionPage). */
  | { readonly type: "connections"; readonly id: number; readonly page: ConnectionPageRequest }
  | { readonly type: "drain"; readonly timeoutMs: number };

export type FromWorker =
  | { readonly type: "ready"; readonly addresses: Record<string, string[]> }
  | { readonly type: "failed"; readonly code: string; readonly message: string }
  | { readonly type: "certFetch"; readonly id: number; readonly identity: string }
  | { readonly type: "reply"; readonly id: number; readonly value: unknown }
  | { readonly type: "drained" };
