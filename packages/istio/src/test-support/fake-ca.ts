/**
 * Test-only: a FAKE Istio CA, a real gRPC server over TLS on 127.0.0.1 serving
 * CreateCertificate by signing with `signer` for the ImpersonatedIdentity, no questions
 * asked; it answers the chain leaf first, roots last, as istiod does.
 */
import * as grpc from "@grpc/grpc-js";
import type { CertificateSource } from "@zt/identity";
import { CA_SERVICE } from "../grpc.js";
import type { CaRequest, CaResponse } from "../messages.js";

export interface FakeIstioCa {
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on `port` (0: any) with the serving certificate `serving`. */
export async function startFakeIstioCa(signer: CertificateSource, serving: { cert: string; key: string }, port = 0): Promise<FakeIstioCa> {
  const server = new grpc.Server();
  server.addService(CA_SERVICE, {
    CreateCertificate: (call: grpc.ServerUnaryCall<CaRequest, CaResponse>, cb: grpc.sendUnaryData<CaResponse>) => {
      const identity = String(call.request.metadata["ImpersonatedIdentity"]);
      signer.sign(call.request.csr, identity, call.request.validity_duration * 1000).then(
        (s) => cb(null, { cert_chain: [...s.certChain, ...s.roots] }),
        (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message }),
      );
    },
  });
  const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.cert), private_key: Buffer.from(serving.key) }]);
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
  return { port: bound, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}
