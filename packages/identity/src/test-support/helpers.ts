/** Test-only helpers: temporary CA directories, issued certificates, loopback mTLS. */
import { createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject, type KeyPairKeyObjectResult } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import type { BuiltinCa } from "../ca.js";
import { generateRootCa } from "../ca-files.js";
import { createKeyAndCsr } from "../csr.js";
import { checkClientIdentity, serverSocketOptions } from "../tls.js";
import { toWorkloadCertificate, type WorkloadCertificate } from "../workload-cert.js";
import { buildCertificate } from "../x509-build.js";
import { subjectKeyIdOf, subjectNameOf } from "../x509-read.js";

export async function tempDir(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), "zt-identity-"));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export type CaKeyType = "rsa" | "ec-p256" | "ec-p384";

function caKey(type: CaKeyType): KeyPairKeyObjectResult {
  if (type === "rsa") return generateKeyPairSync("rsa", { modulusLength: 2048 });
  return generateKeyPairSync("ec", { namedCurve: type === "ec-p256" ? "P-256" : "P-384" });
}

export interface TestCa {
  readonly certPem: string;
  readonly key: KeyObject;
}

/** A CA certificate made with the project's own builder: self-signed, or signed by `issuer`. */
export async function makeCaCert(type: CaKeyType, commonName: string, trustDomain: string, issuer?: TestCa): Promise<TestCa> {
  const { publicKey, privateKey } = caKey(type);
  const now = Date.now();
  const issuerCert = issuer && new X509Certificate(issuer.certPem);
  const { pem } = await buildCertificate(
    {
      spki: publicKey.export({ type: "spki", format: "der" }),
      subject: [
        { type: "O", value: trustDomain },
        { type: "CN", value: commonName },
      ],
      ...(issuerCert ? { issuerName: subjectNameOf(issuerCert.raw) } : {}),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 365 * 24 * 3600 * 1000),
      extensions: [
        { kind: "basicConstraints", ca: true },
        { kind: "keyUsage", keyCertSign: true, cRLSign: true },
        { kind: "subjectKeyIdentifier" },
        ...(issuerCert ? [{ kind: "authorityKeyIdentifier" as const, keyIdentifier: subjectKeyIdOf(issuerCert.raw)! }] : []),
      ],
    },
    issuer?.key ?? privateKey,
  );
  return { certPem: pem, key: privateKey };
}

/**
 * Writes root -> intermediate cacerts (ca-cert = intermediate) into `dir`. The root is the
 * generated RSA one unless `rootKey` says otherwise; the intermediate's key is `interKey`.
 */
export async function writeIntermediateCaDir(
  dir: string,
  trustDomain: string,
  keys: { rootKey?: CaKeyType; interKey?: CaKeyType } = {},
): Promise<{ rootPem: string }> {
  let root: TestCa;
  if (keys.rootKey === undefined) {
    const files = await generateRootCa(trustDomain);
    root = { certPem: files["ca-cert.pem"], key: createPrivateKey(files["ca-key.pem"]) };
  } else {
    root = await makeCaCert(keys.rootKey, "Root CA", trustDomain);
  }
  const inter = await makeCaCert(keys.interKey ?? "rsa", "Intermediate CA", trustDomain, root);
  const keyPem = inter.key.asymmetricKeyType === "rsa" ? inter.key.export({ type: "pkcs1", format: "pem" }) : inter.key.export({ type: "sec1", format: "pem" });
  await writeFile(join(dir, "ca-cert.pem"), inter.certPem);
  await writeFile(join(dir, "ca-key.pem"), keyPem, { mode: 0o600 });
  await writeFile(join(dir, "root-cert.pem"), root.certPem);
  await writeFile(join(dir, "cert-chain.pem"), inter.certPem + root.certPem);
  return { rootPem: root.certPem };
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

/** `openssl <x509|req> -noout -text` of a PEM: a second, independent reading of what we built. */
export function opensslText(kind: "x509" | "req", pem: string): string {
  return execFileSync("openssl", [kind, "-noout", "-text", ...(kind === "req" ? ["-verify"] : [])], { input: pem, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

/** The hex of a key identifier line after `label` in openssl's text ("AB:CD:..."). */
export function keyIdFromText(text: string, label: string): string | undefined {
  const m = new RegExp(`${label}:[^\\n]*\\n\\s*(?:keyid:)?([0-9A-F:]+)`).exec(text);
  return m?.[1];
}
