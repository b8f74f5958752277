/**
 * A FAKE xDS server for tests, driven by the test step by step: a real grpc-js server
 * (TLS on 127.0.0.1, port 0) serving ADS_SERVICE, whose streams the test awaits, reads
 * (decoded requests) and answers with scripted responses, then ends, breaks or kills.
 * It knows nothing of what a real server would send; each test says it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadOrCreateCa } from "@zt/identity";
import { ADS_SERVICE } from "../grpc.js";
import type { DeltaRequest, DeltaResponse } from "../messages.js";

/** The name in the peer's certificate (the client connects to 127.0.0.1 and checks this one). */
export const PEER_HOSTNAME = "istiod.istio-system.svc";

export interface PeerStream {
  /** The metadata the stream arrived with. */
  readonly token: string | undefined;
  readonly clusterId: string | undefined;
  /** The next request, decoded; rejects after `timeoutMs` or when the stream ends first. */
  next(timeoutMs?: number): Promise<Required<DeltaRequest>>;
  send(r: DeltaResponse): void;
  /** Ends the stream with OK. */
  end(): void;
  /** Ends it with a status (default UNAVAILABLE). */
  fail(code?: grpc.status, details?: string): void;
  readonly ended: boolean;
}

export interface XdsPeer {
  readonly port: number;
  readonly address: string;
  /** PEM of the self-signed serving certificate (the client's root). */
  readonly rootPem: string;
  /** Streams in arrival order. */
  readonly streams: readonly PeerStream[];
  /** The next stream not yet taken by nextStream(). */
  nextStream(timeoutMs?: number): Promise<PeerStream>;
  /** Stops at once, breaking every stream (a server that dies). */
  kill(): Promise<void>;
  /** Listens again on the same port, with the same certificate. */
  restart(): Promise<void>;
}

interface Cert {
  readonly cert: string;
  readonly key: string;
}

/** A serving certificate for PEER_HOSTNAME from a fresh mesh CA of our own, and that CA's root. */
async function servingCert(): Promise<Cert & { readonly root: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-xds-peer-"));
  try {
    const ca = await loadOrCreateCa({ dir, trustDomain: "cluster.local" });
    const s = await ca.issueServing({ dns: [PEER_HOSTNAME] }, 24 * 3600_000);
    return { cert: s.certChain.join(""), key: s.keyPem, root: s.roots.join("") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Duplex = grpc.ServerDuplexStream<Required<DeltaRequest>, DeltaResponse>;

function peerStream(call: Duplex): PeerStream {
  const queue: Required<DeltaRequest>[] = [];
  const waiters: { resolve: (r: Required<DeltaRequest>) => void; reject: (e: Error) => void }[] = [];
  let ended = false;
  const finish = (): void => {
    ended = true;
    for (const w of waiters.splice(0)) w.reject(new Error("the stream ended before the next request"));
  };
  call.on("data", (r: Required<DeltaRequest>) => {
    const w = waiters.shift();
    if (w) w.resolve(r);
    else queue.push(r);
  });
  call.on("end", finish);
  call.on("error", finish);
  call.on("cancelled", finish);
  call.on("close", finish);
  const first = (key: string): string | undefined => {
    const v = call.metadata.get(key)[0];
    return v === undefined ? undefined : String(v);
  };
  // Headers now: the client sees the stream up before any response.
  call.sendMetadata(new grpc.Metadata());
  return {
    token: first("authorization")?.replace(/^Bearer /, ""),
    clusterId: first("clusterid"),
    next: (timeoutMs = 5000) => {
      const r = queue.shift();
      if (r) return Promise.resolve(r);
      if (ended) return Promise.reject(new Error("the stream has ended"));
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no request within ${timeoutMs} ms`));
        }, timeoutMs);
        const w = { resolve: (x: Required<DeltaRequest>) => (clearTimeout(t), resolve(x)), reject: (e: Error) => (clearTimeout(t), reject(e)) };
        waiters.push(w);
      });
    },
    send: (r) => void call.write(r),
    end: () => {
      finish();
      call.end();
    },
    fail: (code = grpc.status.UNAVAILABLE, details = "FAKE peer failed the stream") => {
      finish();
      call.emit("error", { code, details });
    },
    get ended() {
      return ended;
    },
  };
}

export async function startXdsPeer(): Promise<XdsPeer> {
  const { cert, key, root } = await servingCert();
  const streams: PeerStream[] = [];
  let taken = 0;
  const waiting: ((s: PeerStream) => void)[] = [];
  let server: grpc.Server;
  let port = 0;

  const listen = async (): Promise<void> => {
    server = new grpc.Server();
    server.addService(ADS_SERVICE, {
      DeltaAggregatedResources: (call: Duplex) => {
        const s = peerStream(call);
        streams.push(s);
        const w = waiting.shift();
        if (w) {
          taken++;
          w(s);
        }
      },
    });
    const creds = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(key), cert_chain: Buffer.from(cert) }], false);
    port = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
  };
  await listen();

  return {
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    rootPem: root,
    streams,
    nextStream: (timeoutMs = 10_000) => {
      if (taken < streams.length) return Promise.resolve(streams[taken++]!);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiting.splice(waiting.indexOf(w), 1);
          reject(new Error(`no xDS stream within ${timeoutMs} ms`));
        }, timeoutMs);
        const w = (s: PeerStream): void => (clearTimeout(t), resolve(s));
        waiting.push(w);
      });
    },
    kill: async () => {
      server.forceShutdown();
    },
    restart: listen,
  };
}
