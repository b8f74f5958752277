/** Test-only helpers: temporary CA directories, issued certificates, loopback mTLS. */
import { createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import forge from "node-forge";
import type { BuiltinCa } from "../ca.js";
import { generateRootCa } from "../ca-files.js";
import { createKeyAndCsr } from "../csr.js";
import { forgePrivateKey, forgePublicKey } from "../pem.js";
import { checkClientIdentity, serverSocketOptions } from "../tls.js";
import { toWorkloadCertificate, type WorkloadCertificate } from "../workload-cert.js";
import { buildCertificate, subjectNameOf } from "../x509-build.js";

export async function tempDir(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), "zt-identity-"));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Writes root -> intermediate cacerts (ca-cert = intermediate) into `dir`. */
export async function writeIntermediateCaDir(dir: string, trustDomain: string): Promise<{ rootPem: string }> {
  const root = await generateRootCa(trustDomain);
  const rootPem = root["ca-cert.pem"];
  const rootKey = forgePrivateKey(createPrivateKey(root["ca-key.pem"]));
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const key = forgePrivateKey(privateKey);
  const rootCert = forge.pki.certificateFromPem(rootPem);
  const ski = rootCert.generateSubjectKeyIdentifier().getBytes();
  const now = Date.now();
  const { pem: interPem } = buildCertificate(
    {
      publicKey: forgePublicKey(key),
      subject: [
        { name: "organizationName", value: trustDomain },
        { name: "commonName", value: "Intermediate CA" },
      ],
      issuerName: subjectNameOf(new X509Certificate(rootPem).raw),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 365 * 24 * 3600 * 1000),
      extensions: [
        { name: "basicConstraints", cA: true, critical: true },
        { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
        { name: "subjectKeyIdentifier" },
        { name: "authorityKeyIdentifier", keyIdentifier: ski },
      ],
    },
    rootKey,
  );
  await writeFile(join(dir, "ca-cert.pem"), interPem);
  await writeFile(join(dir, "ca-key.pem"), privateKey.export({ type: "pkcs1", format: "pem" }), { mode: 0o600 });
  await writeFile(join(dir, "root-cert.pem"), rootPem);
  await writeFile(join(dir, "cert-chain.pem"), interPem + rootPem);
  return { rootPem };
}

export async function issue(ca: BuiltinCa, identity: string, ttlMs = 3_600_000): Promise<WorkloadCertificate> {
  const { keyPem, csrPem } = await createKeyAndCsr(identity);
  return toWorkloadCertificate(identity, keyPem, await ca.sign(csrPem, identity, ttlMs));
}

export interface LoopbackServer {
  readonly port: number;
  /** Server-side sockets that completed the handshake, in order. */
  readonly accepted: tls.TLSSocket[];
  /** Server-side handshake errors. */
  readonly errors: Error[];
  close(): Promise<void>;
}

/**
 * A raw TCP listener that wraps each accepted socket with
 * `new tls.TLSSocket(raw, serverSocketOptions(cert()))` (as the HBONE inbound
 * does), refuses clients failing checkClientIdentity, and echoes bytes.
 */
export async function startEchoServer(cert: () => WorkloadCertificate, trustDomain: string): Promise<LoopbackServer> {
  const accepted: tls.TLSSocket[] = [];
  const errors: Error[] = [];
  const raws = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    raws.add(raw);
    raw.on("close", () => raws.delete(raw));
    const sock = new tls.TLSSocket(raw, serverSocketOptions(cert()));
    sock.on("error", (err) => errors.push(err));
    sock.on("secure", () => {
      const refused = checkClientIdentity(sock, trustDomain);
      if (refused) {
        errors.push(refused);
        sock.destroy();
        return;
      }
      accepted.push(sock);
      sock.pipe(sock);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    accepted,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of raws) r.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Connects; resolves once the handshake completes (or rejects with the socket error). */
export function connect(port: number, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ ...options, host: "127.0.0.1", port });
    sock.once("secureConnect", () => resolve(sock));
    sock.once("error", reject);
  });
}

/** Writes `text` and waits for it to come back (the echo server). */
export function roundTrip(sock: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= text.length) {
        sock.off("data", onData);
        resolve(got);
      }
    };
    sock.on("data", onData);
    sock.once("error", reject);
    sock.once("close", () => reject(new Error(`closed after "${got}"`)));
    sock.write(text);
  });
}

/** Resolves when the socket fails or closes (for refusals that surface after the handshake). */
export function outcome(sock: tls.TLSSocket): Promise<Error | "closed"> {
  return new Promise((resolve) => {
    sock.once("error", (err) => resolve(err));
    sock.once("close", () => resolve("closed"));
    sock.resume();
  });
}
