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
  /** The current certificate's serial number (hex): it changes at each re-issue. */
  serial(): string;
  close(): void;
}

export interface ServingCertOptions {
  /** The shortest wait before a re-issue, whatever the lifetime; default a minute (a test makes both short). */
  readonly minRefreshMs?: number;
}

export async function startServingCert(ca: BuiltinCa, names: { dns: string[]; ips: string[] }, ttlMs: number, logger: Logger, o: ServingCertOptions = {}): Promise<ServingCert> {
  const minRefreshMs = o.minRefreshMs ?? 60_000;
  const listeners = new Set<Listener>();
  let current: Update;
  let expiresAt = 0;
  let serial = "";
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const issue = async (): Promise<void> => {
    const s = await ca.issueServing(names, ttlMs);
    current = { certificate: Buffer.from(s.certChain.join("")), privateKey: Buffer.from(s.keyPem) };
    const x = new X509Certificate(s.certChain[0]!);
    expiresAt = new Date(x.validTo).getTime();
    serial = x.serialNumber;
    for (const l of listeners) l(current);
  };
  const schedule = (): void => {
    if (closed) return;
    const wait = Math.max(minRefreshMs, Math.min(2 ** 31 - 1, (expiresAt - Date.now()) / 2));
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
    serial: () => serial,
    close: () => {
      closed = true;
      clearTimeout(timer);
    },
  };
}
