/**
 * The controller's own TLS certificate, signed by the mesh CA for its Service's DNS names
 * (what agents dial: CA_ADDRESS / XDS_ADDRESS), as a grpc-js certificate provider: it is
 * re-issued at half its lifetime and handed to the server without a restart; connections
 * already open keep the one they started with.
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { X509Certificate } from "node:crypto";
import type { BuiltinCa } from "@zt/identity";

type Update = { certificate: Buffer; privateKey: Buffer };
type Listener = (u: Update | null) => void;

export interface ServingCert {
  readonly credentials: grpc.ServerCredentials;
  /** When the current certificate expires (ISO). */
  expires(): string;
  close(): void;
}

export async function startServingCert(ca: BuiltinCa, names: { dns: string[]; ips: string[] }, ttlMs: number, logger: Logger): Promise<ServingCert> {
  const listeners = new Set<Listener>();
  let current: Update;
  let expiresAt = 0;
  let timer: NodeJS.Timeout | undefined;
  const issue = async (): Promise<void> => {
    const s = await ca.issueServing(names, ttlMs);
    current = { certificate: Buffer.from(s.certChain.join("")), privateKey: Buffer.from(s.keyPem) };
    expiresAt = new Date(new X509Certificate(s.certChain[0]!).validTo).getTime();
    for (const l of listeners) l(current);
  };
  const schedule = (): void => {
    const wait = Math.max(60_000, Math.min(2 ** 31 - 1, (expiresAt - Date.now()) / 2));
    timer = setTimeout(() => {
      issue().then(
        () => logger.info({ expires: new Date(expiresAt).toISOString() }, "serving certificate re-issued"),
        (err: unknown) => logger.error({ err, code: "CERT_ISSUE_FAILED" }, `serving certificate not re-issued: ${(err as Error).message}; retrying`),
      ).finally(schedule);
    }, wait);
    timer.unref();
  };
  await issue();
  schedule();
  const provider = {
    addIdentityCertificateListener: (l: Listener) => {
      listeners.add(l);
      // After the call returns: grpc-js registers the server as a watcher of its credentials only then, and an update before it would be lost.
      queueMicrotask(() => listeners.has(l) && l(current));
    },
    removeIdentityCertificateListener: (l: Listener) => void listeners.delete(l),
    addCaCertificateListener: () => {},
    removeCaCertificateListener: () => {},
  };
  return {
    credentials: grpc.experimental.createCertificateProviderServerCredentials(provider, null, false),
    expires: () => new Date(expiresAt).toISOString(),
    close: () => clearTimeout(timer),
  };
}
