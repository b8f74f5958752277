/** Reading, generating and validating an Istio-style `cacerts` directory. */
import { generateKeyPair, type KeyObject, type X509Certificate } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { ZtError } from "@zt/errors";
import { buildCertificate } from "./x509-build.js";

export const CA_CERT_FILE = "ca-cert.pem";
export const CA_KEY_FILE = "ca-key.pem";
export const ROOT_CERT_FILE = "root-cert.pem";
export const CERT_CHAIN_FILE = "cert-chain.pem";
export const CA_FILES = [CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE, CERT_CHAIN_FILE] as const;

export type CaFileName = (typeof CA_FILES)[number];
export type CaFileTexts = Record<CaFileName, string>;

const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;
const CLOCK_SKEW_MS = 60_000;
const generateKeyPairAsync = promisify(generateKeyPair);

/** Reads the four files; `undefined` when none exists (missing or empty directory). */
export async function readCaFiles(dir: string): Promise<CaFileTexts | undefined> {
  const found = new Map<CaFileName, string>();
  for (const name of CA_FILES) {
    try {
      found.set(name, await readFile(join(dir, name), "utf8"));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") continue;
      throw new ZtError(
        "CA_FILES_UNREADABLE",
        `cannot read ${join(dir, name)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  if (found.size === 0) return undefined;
  const missing = CA_FILES.filter((n) => !found.has(n));
  if (missing.length > 0) {
    throw new ZtError(
      "CA_FILES_INCOMPLETE",
      `CA directory ${dir} is incomplete: missing ${missing.join(", ")} ` +
        `(present: ${[...found.keys()].join(", ")}). Provide all four of ${CA_FILES.join(", ")}, ` +
        `or none to let the agent generate a self-signed root there.`,
    );
  }
  return Object.fromEntries(found) as CaFileTexts;
}

/**
 * Generates a self-signed RSA 2048 root for `trustDomain` (the key type of Istio's own
 * self-signed root); returns the four file texts.
 */
export async function generateRootCa(trustDomain: string): Promise<CaFileTexts> {
  const { publicKey, privateKey } = await generateKeyPairAsync("rsa", { modulusLength: 2048 });
  const now = Date.now();
  const { pem } = await buildCertificate(
    {
      spki: publicKey.export({ type: "spki", format: "der" }),
      subject: [{ type: "O", value: trustDomain }],
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + ROOT_LIFETIME_MS),
      extensions: [
        { kind: "basicConstraints", ca: true },
        { kind: "keyUsage", keyCertSign: true, cRLSign: true },
        { kind: "subjectKeyIdentifier" },
      ],
    },
    privateKey,
  );
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return { [CA_CERT_FILE]: pem, [CA_KEY_FILE]: keyPem, [ROOT_CERT_FILE]: pem, [CERT_CHAIN_FILE]: pem };
}

/** Writes the files (key 0600, certificates 0644), each via a temporary file and rename. */
export async function writeCaFiles(dir: string, files: CaFileTexts): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    const suffix = `.tmp-${process.pid}-${Date.now()}`;
    for (const name of CA_FILES) {
      const mode = name === CA_KEY_FILE ? 0o600 : 0o644;
      await writeFile(join(dir, name + suffix), files[name], { mode, flag: "wx" });
    }
    for (const name of CA_FILES) await rename(join(dir, name + suffix), join(dir, name));
  } catch (err) {
    throw new ZtError(
      "CA_FILES_UNWRITABLE",
      `cannot write the generated CA into ${dir}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** Whether `cert` chains (via `intermediates`) to one of `roots`, checking each signature. */
export function chainsToRoot(
  cert: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
): boolean {
  let cur = cert;
  for (let depth = 0; depth <= intermediates.length; depth++) {
    const c = cur;
    if (roots.some((r) => r.fingerprint256 === c.fingerprint256)) return true;
    if (roots.some((r) => c.checkIssued(r) && c.verify(r.publicKey))) return true;
    const next = intermediates.find(
      (i) => i.fingerprint256 !== c.fingerprint256 && c.checkIssued(i) && c.verify(i.publicKey),
    );
    if (!next) return false;
    cur = next;
  }
  return false;
}

/** Asymmetric key type, for messages. */
export function keyTypeName(key: KeyObject): string {
  return key.asymmetricKeyType ?? key.type;
}
