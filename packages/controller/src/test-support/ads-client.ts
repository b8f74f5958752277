/**
 * For the xDS server's tests and its benchmark: a TLS gRPC server on loopback with a
 * certificate from the project's own CA, and a raw delta xDS client over grpc-js's bidi
 * call and the codec (no xDS client logic of @zt/istio): it sends what it is told, keeps
 * the versions it was sent, counts the bytes of the responses, and ACKs them if asked.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createKeyAndCsr, loadOrCreateCa, toWorkloadCertificate } from "@zt/identity";
import { ADS_SERVICE, decodeDeltaResponse, DELTA_XDS_METHOD, encodeDeltaRequest, type DeltaRequest, type DeltaResponse } from "@zt/istio";

export const SERVER_IDENTITY = "spiffe://cluster.local/ns/istio-system/sa/zt-controller";

export interface TlsServer {
  readonly server: grpc.Server;
  readonly port: number;
  readonly rootPem: string;
  close(): Promise<void>;
}

/** A grpc-js server on 127.0.0.1 (port 0) over TLS serving `implementation` as ADS. */
export async function startTlsAdsServer(implementation: grpc.UntypedServiceImplementation): Promise<TlsServer> {
  const dir = await mkdtemp(join(tmpdir(), "zt-xds-"));
  const ca = await loadOrCreateCa({ dir, trustDomain: "cluster.local" });
  const { keyPem, csrPem } = await createKeyAndCsr(SERVER_IDENTITY);
  const cert = toWorkloadCertificate(SERVER_IDENTITY, keyPem, await ca.sign(csrPem, SERVER_IDENTITY, 3_600_000));
  await rm(dir, { recursive: true, force: true });
  const server = new grpc.Server();
  server.addService(ADS_SERVICE, implementation);
  const creds = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certChain.join("")) }], false);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", creds, (e, p) => (e ? reject(e) : resolve(p))));
  return {
    server,
    port,
    rootPem: cert.roots.join(""),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

export interface RawAdsClient {
  readonly nodeId: string;
  /** Per type: name -> version, as the responses left it. */
  readonly held: Map<string, Map<string, string>>;
  /** Every response received, in order. */
  readonly responses: DeltaResponse[];
  /** Bytes of the response messages received (gRPC message bodies). */
  readonly bytes: number;
  send(r: Omit<DeltaRequest, "node"> & { node?: DeltaRequest["node"] }): void;
  /** Subscribes (wildcard) to each type, with the versions given as held. */
  subscribe(types: readonly string[], initial?: Readonly<Record<string, Readonly<Record<string, string>>>>): void;
  /** The next response not yet taken (of that type, when given). */
  next(type?: string, timeoutMs?: number): Promise<DeltaResponse>;
  ack(r: DeltaResponse): void;
  nack(r: DeltaResponse, message: string): void;
  /** Called for each response after it is applied to `held` (and ACKed when autoAck). */
  onResponse: ((r: DeltaResponse) => void) | null;
  /** The status the call ended with. */
  readonly ended: Promise<grpc.StatusObject>;
  /** Stops reading the stream (HTTP/2 flow control then holds the server's writes back), and reads again. */
  pause(): void;
  resume(): void;
  close(): void;
}

export function connectRawAds(port: number, rootPem: string, opts: { nodeId: string; metadata?: grpc.Metadata; autoAck?: boolean; keepResponses?: boolean }): RawAdsClient {
  const creds = grpc.credentials.createSsl(Buffer.from(rootPem), null, null, {
    checkServerIdentity: (_host, cert) => (cert.subjectaltname?.split(", ").includes(`URI:${SERVER_IDENTITY}`) ? undefined : new Error(`server is not ${SERVER_IDENTITY}`)),
  });
  // Its own connection per client (no shared subchannel), and no limit on a response's size (a full sync is one response).
  const client = new grpc.Client(`127.0.0.1:${port}`, creds, { "grpc.use_local_subchannel_pool": 1, "grpc.max_receive_message_length": -1, "grpc.ssl_target_name_override": "zt-controller.istio-system.svc" });
  let bytes = 0;
  const call = client.makeBidiStreamRequest<DeltaRequest, DeltaResponse>(
    DELTA_XDS_METHOD,
    (r) => encodeDeltaRequest(r),
    (b) => {
      bytes += b.length;
      return decodeDeltaResponse(b);
    },
    opts.metadata ?? new grpc.Metadata(),
  );
  const held = new Map<string, Map<string, string>>();
  const responses: DeltaResponse[] = [];
  let taken = 0;
  const waiters: (() => void)[] = [];
  let sentNode = false;
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("error", () => {}); // the status says it
  const self: RawAdsClient = {
    nodeId: opts.nodeId,
    held,
    responses,
    get bytes(): number {
      return bytes;
    },
    onResponse: null,
    ended,
    send(r) {
      call.write({ ...r, ...(sentNode ? {} : { node: { id: opts.nodeId, metadata: {} } }) });
      sentNode = true;
    },
    subscribe(types, initial = {}) {
      for (const type_url of types) {
        const versions = initial[type_url] ?? {};
        held.set(type_url, new Map(Object.entries(versions)));
        self.send({ type_url, resource_names_subscribe: [], initial_resource_versions: versions });
      }
    },
    async next(type, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (let i = taken; i < responses.length; i++) {
          const r = responses[i]!;
          if (type === undefined || r.type_url === type) {
            // Take it: everything before it of other types stays available.
            responses.splice(i, 1);
            responses.splice(taken, 0, r);
            taken++;
            return r;
          }
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`${opts.nodeId}: no response${type ? ` of ${type}` : ""} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    ack(r) {
      self.send({ type_url: r.type_url, response_nonce: r.nonce });
    },
    nack(r, message) {
      self.send({ type_url: r.type_url, response_nonce: r.nonce, error_detail: { code: grpc.status.INVALID_ARGUMENT, message } });
    },
    pause() {
      call.pause();
    },
    resume() {
      call.resume();
    },
    close() {
      call.cancel();
      client.close();
    },
  };
  call.on("data", (r: DeltaResponse) => {
    let m = held.get(r.type_url);
    if (!m) held.set(r.type_url, (m = new Map()));
    for (const res of r.resources) m.set(res.name, res.version);
    for (const name of r.removed_resources) m.delete(name);
    if (opts.keepResponses !== false) responses.push(r);
    if (opts.autoAck) self.ack(r);
    self.onResponse?.(r);
    for (const w of waiters.splice(0)) w();
  });
  return self;
}
