/**
 * The built-in CA: an Istio-style `cacerts` directory (loaded, or generated on
 * first start) that signs workload CSRs, with an RSA or an EC key (node:crypto signs).
 */
import { createPrivateKey, generateKeyPair, type KeyObject, type X509Certificate } from "node:crypto";
import { promisify } from "node:util";
import { join } from "node:path";
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
import { verifyCsr } from "./csr-verify.js";
import { isSelfSigned, parseCerts, splitPemCerts } from "./pem.js";
import { signatureAlgorithmFor, SUPPORTED_SIGNING_KEYS } from "./signing.js";
import { parseSpiffe } from "./spiffe.js";
import type { CertificateSource, SignedCertificate } from "./types.js";
import { buildCertificate, type CertTemplate } from "./x509-build.js";
import { keyIdentifier, type Extension } from "./x509-extensions.js";
import { allowsKeyCertSign, spkiOf, subjectKeyIdOf, subjectNameOf } from "./x509-read.js";

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
  /**
   * A serving certificate (and its new P-256 key) for a server reached by name, such as a
   * control plane: DNS names and IPs as SANs, serverAuth only; the chain as `sign` makes it.
   */
  issueServing(names: { readonly dns: readonly string[]; readonly ips?: readonly string[] }, ttlMs: number): Promise<ServingCertificate>;
}

export interface ServingCertificate extends SignedCertificate {
  readonly keyPem: string;
}

export interface CaOptions {
  readonly dir: string;
  readonly trustDomain: string;
}

const CLOCK_SKEW_MS = 60_000;
const generateKeyPairAsync = promisify(generateKeyPair);

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
  if (!signatureAlgorithmFor(key)) {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    fail(
      "CA_KEY_UNSUPPORTED",
      `${path} holds a ${keyTypeName(key)}${curve ? ` (${curve})` : ""} key; the built-in CA signs with ` +
        `${SUPPORTED_SIGNING_KEYS} keys (e.g. "openssl genrsa 2048" or "openssl ecparam -name prime256v1 -genkey").`,
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
  let keyCertSign: boolean | undefined;
  let issuerName: Buffer;
  let authorityKeyId: Buffer;
  try {
    keyCertSign = allowsKeyCertSign(caCert.raw);
    issuerName = subjectNameOf(caCert.raw);
    // Leaves name their issuer's key as the issuer itself does, or by RFC 5280's method 1 when it does not.
    authorityKeyId = subjectKeyIdOf(caCert.raw) ?? keyIdentifier(spkiOf(caCert.raw));
  } catch (err) {
    fail("CA_CERT_INVALID", `${join(dir, CA_CERT_FILE)} has a malformed TBSCertificate: ${(err as Error).message}`, err);
  }
  if (!caCert.ca || keyCertSign === false) {
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

  const intermediates = chain.filter((c) => !isSelfSigned(c)).map((c) => c.toString());
  const rootPems = splitPemCerts(files[ROOT_CERT_FILE]);

  /** A leaf of ours: lifetime checked, rounded up to whole seconds and never past the issuer's; the chain as we send it. */
  async function leaf(spki: Buffer, subject: CertTemplate["subject"], ttlMs: number, extensions: readonly Extension[]): Promise<SignedCertificate> {
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      fail("CA_TTL_INVALID", `certificate lifetime must be a positive number of milliseconds, got ${ttlMs}`);
    }
    const now = Date.now();
    if (notAfter.getTime() <= now) {
      fail("CA_CERT_EXPIRED", `${join(dir, CA_CERT_FILE)} expired at ${notAfter.toISOString()}; replace the CA files and restart`);
    }
    const { pem } = await buildCertificate(
      {
        spki,
        subject,
        issuerName,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        // X.509 times have whole seconds: round up so the lifetime is at least ttlMs,
        // but a leaf never outlives its issuer.
        notAfter: new Date(Math.min(Math.ceil((now + ttlMs) / 1000) * 1000, notAfter.getTime())),
        extensions: [
          { kind: "basicConstraints", ca: false },
          // Istio's CA gives every workload leaf both, whatever its key: keyEncipherment means
          // nothing to an EC key, and TLS 1.3 (ECDHE, signatures) never relies on it.
          { kind: "keyUsage", digitalSignature: true, keyEncipherment: true },
          ...extensions,
          { kind: "authorityKeyIdentifier", keyIdentifier: authorityKeyId },
        ],
      },
      key,
    );
    return { certChain: [pem, ...intermediates], roots: [...rootPems] };
  }

  async function sign(csrPem: string, identity: string, ttlMs: number): Promise<SignedCertificate> {
    const id = parseSpiffe(identity);
    if (!id || id.trustDomain !== trustDomain) {
      fail(
        "CA_IDENTITY_REJECTED",
        `the built-in CA signs only spiffe://${trustDomain}/ns/<namespace>/sa/<serviceAccount> identities; ` +
          `refused "${identity}"`,
      );
    }
    const { spki } = await verifyCsr(csrPem);
    return leaf(spki, [], ttlMs, [
      { kind: "extKeyUsage", serverAuth: true, clientAuth: true },
      { kind: "subjectAltName", uri: identity },
    ]);
  }

  async function issueServing(names: { readonly dns: readonly string[]; readonly ips?: readonly string[] }, ttlMs: number): Promise<ServingCertificate> {
    if (names.dns.length === 0 && (names.ips ?? []).length === 0) throw new RangeError("a serving certificate needs at least one DNS name or IP");
    const pair = await generateKeyPairAsync("ec", { namedCurve: "P-256" });
    const signed = await leaf(pair.publicKey.export({ type: "spki", format: "der" }), names.dns[0] ? [{ type: "CN", value: names.dns[0] }] : [], ttlMs, [
      { kind: "extKeyUsage", serverAuth: true },
      { kind: "serverNames", dns: names.dns, ips: names.ips ?? [] },
    ]);
    return { ...signed, keyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
  }

  return { dir, trustDomain, generated, sign, issueServing, roots: () => [...rootPems] };
}
