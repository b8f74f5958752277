/**
 * The built-in CA: an Istio-style `cacerts` directory (loaded, or generated on
 * first start) that signs workload CSRs. Signing uses node-forge, hence RSA only.
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from "node:crypto";
import { join } from "node:path";
import forge from "node-forge";
import { ZtError, type ErrorCode } from "@zt/errors";
import {
  CA_CERT_FILE,
  CA_KEY_FILE,
  CERT_CHAIN_FILE,
  ROOT_CERT_FILE,
  chainsToRoot,
  generateRootCa,
  keyTypeName,
  readCaFiles,
  writeCaFiles,
  type CaFileTexts,
} from "./ca-files.js";
import { forgePrivateKey, isSelfSigned, parseCerts, splitPemCerts } from "./pem.js";
import { parseSpiffe } from "./spiffe.js";
import type { CertificateSource, SignedCertificate } from "./types.js";
import { buildCertificate, subjectNameOf } from "./x509-build.js";

export interface BuiltinCa extends CertificateSource {
  readonly dir: string;
  readonly trustDomain: string;
  /** True when this call generated a fresh self-signed root into `dir`. */
  readonly generated: boolean;
  /**
   * Signs a workload CSR for `identity` (a SPIFFE id in our trust domain).
   * The CSR's own subject and SANs are ignored: the leaf carries exactly one
   * URI SAN, `identity`. certChain = [leaf, ...cert-chain.pem minus self-signed
   * roots]; roots = the certificates of root-cert.pem.
   */
  sign(csrPem: string, identity: string, ttlMs: number): Promise<SignedCertificate>;
  /** PEMs of root-cert.pem (the mesh trust bundle). */
  roots(): string[];
}

export interface CaOptions {
  readonly dir: string;
  readonly trustDomain: string;
}

const CLOCK_SKEW_MS = 60_000;

export async function loadOrCreateCa(opts: CaOptions): Promise<BuiltinCa> {
  let files = await readCaFiles(opts.dir);
  let generated = false;
  if (!files) {
    files = await generateRootCa(opts.trustDomain);
    await writeCaFiles(opts.dir, files);
    generated = true;
  }
  return createCa(opts, files, generated);
}

function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new ZtError(code, message, cause === undefined ? undefined : { cause });
}

function certs(dir: string, name: string, text: string, code: ErrorCode): X509Certificate[] {
  let parsed: X509Certificate[];
  try {
    parsed = parseCerts(text);
  } catch (err) {
    fail(code, `${join(dir, name)} holds a corrupt certificate: ${(err as Error).message}`, err);
  }
  if (parsed.length === 0) fail(code, `${join(dir, name)} contains no PEM certificate`);
  return parsed;
}

function loadKey(dir: string, text: string): KeyObject {
  const path = join(dir, CA_KEY_FILE);
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (err) {
    fail("CA_KEY_INVALID", `${path} is not an unencrypted PEM private key: ${(err as Error).message}`, err);
  }
  if (key.asymmetricKeyType !== "rsa") {
    fail(
      "CA_KEY_UNSUPPORTED",
      `${path} holds a ${keyTypeName(key)} key; the built-in CA signs with node-forge, which supports ` +
        `RSA keys only. Provide an RSA CA key and certificate (e.g. "openssl genrsa 2048").`,
    );
  }
  return key;
}

function createCa(opts: CaOptions, files: CaFileTexts, generated: boolean): BuiltinCa {
  const { dir, trustDomain } = opts;
  const caCert = certs(dir, CA_CERT_FILE, files[CA_CERT_FILE], "CA_CERT_INVALID")[0]!;
  const key = loadKey(dir, files[CA_KEY_FILE]);
  const rootCerts = certs(dir, ROOT_CERT_FILE, files[ROOT_CERT_FILE], "CA_ROOT_INVALID");
  const chain = certs(dir, CERT_CHAIN_FILE, files[CERT_CHAIN_FILE], "CA_CHAIN_INVALID");

  if (!caCert.checkPrivateKey(key)) {
    fail("CA_KEY_MISMATCH", `${join(dir, CA_KEY_FILE)} is not the private key of ${join(dir, CA_CERT_FILE)}`);
  }
  let forgeCert: forge.pki.Certificate;
  try {
    forgeCert = forge.pki.certificateFromPem(caCert.toString());
  } catch (err) {
    fail("CA_CERT_INVALID", `${join(dir, CA_CERT_FILE)} cannot be read by node-forge: ${(err as Error).message}`, err);
  }
  const ku = forgeCert.getExtension("keyUsage") as { keyCertSign?: boolean } | undefined;
  if (!caCert.ca || (ku && !ku.keyCertSign)) {
    fail(
      "CA_CERT_NOT_CA",
      `${join(dir, CA_CERT_FILE)} (subject "${(caCert.subject ?? "").replace(/\n/g, ", ")}") is not a CA certificate: ` +
        `it needs basicConstraints CA:TRUE and, if keyUsage is present, keyCertSign`,
    );
  }
  const notAfter = new Date(caCert.validTo);
  if (notAfter.getTime() <= Date.now()) {
    fail("CA_CERT_EXPIRED", `${join(dir, CA_CERT_FILE)} expired at ${notAfter.toISOString()}`);
  }
  if (chain[0]!.fingerprint256 !== caCert.fingerprint256) {
    fail("CA_CHAIN_INVALID", `${join(dir, CERT_CHAIN_FILE)} must begin with the certificate of ${CA_CERT_FILE}`);
  }
  if (!chainsToRoot(caCert, chain.slice(1), rootCerts)) {
    fail(
      "CA_CHAIN_INVALID",
      `${join(dir, CA_CERT_FILE)} does not chain to any certificate of ${ROOT_CERT_FILE} ` +
        `through ${CERT_CHAIN_FILE} (check the files belong together)`,
    );
  }

  const signingKey = forgePrivateKey(key);
  const issuerName = subjectNameOf(caCert.raw);
  const ski = forgeCert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | undefined;
  const authorityKeyId = ski?.subjectKeyIdentifier
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : forgeCert.generateSubjectKeyIdentifier().getBytes();
  const intermediates = chain.filter((c) => !isSelfSigned(c)).map((c) => c.toString());
  const rootPems = splitPemCerts(files[ROOT_CERT_FILE]);

  async function sign(csrPem: string, identity: string, ttlMs: number): Promise<SignedCertificate> {
    const id = parseSpiffe(identity);
    if (!id || id.trustDomain !== trustDomain) {
      fail(
        "CA_IDENTITY_REJECTED",
        `the built-in CA signs only spiffe://${trustDomain}/ns/<namespace>/sa/<serviceAccount> identities; ` +
          `refused "${identity}"`,
      );
    }
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      fail("CA_TTL_INVALID", `certificate lifetime must be a positive number of milliseconds, got ${ttlMs}`);
    }
    const now = Date.now();
    if (notAfter.getTime() <= now) {
      fail("CA_CERT_EXPIRED", `${join(dir, CA_CERT_FILE)} expired at ${notAfter.toISOString()}; replace the CA files and restart`);
    }
    const publicKey = csrPublicKey(csrPem);
    const { pem } = buildCertificate(
      {
        publicKey,
        subject: [],
        issuerName,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        // X.509 times have whole seconds: round up so the lifetime is at least ttlMs,
        // but a leaf never outlives its issuer.
        notAfter: new Date(Math.min(Math.ceil((now + ttlMs) / 1000) * 1000, notAfter.getTime())),
        extensions: [
          { name: "basicConstraints", cA: false, critical: true },
          { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
          { name: "extKeyUsage", serverAuth: true, clientAuth: true },
          { name: "subjectAltName", altNames: [{ type: 6, value: identity }], critical: true },
          { name: "authorityKeyIdentifier", keyIdentifier: authorityKeyId },
        ],
      },
      signingKey,
    );
    return { certChain: [pem, ...intermediates], roots: [...rootPems] };
  }

  return { dir, trustDomain, generated, sign, roots: () => [...rootPems] };
}

function csrPublicKey(csrPem: string): forge.pki.PublicKey {
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    fail("CSR_INVALID", `the CSR is not a PEM PKCS#10 request with an RSA key: ${(err as Error).message}`, err);
  }
  let ok = false;
  try {
    ok = csr.verify();
  } catch (err) {
    fail("CSR_INVALID", `the CSR signature cannot be checked: ${(err as Error).message}`, err);
  }
  if (!ok || !csr.publicKey) fail("CSR_INVALID", "the CSR signature does not verify against its public key");
  return csr.publicKey;
}
