/**
 * What a remote CA's answer must be before a node agent uses it: certificates in PEM,
 * the leaf (not a CA, for serverAuth and clientAuth) for exactly the identity asked for and for our own key, chained to one of the
 * mesh roots we were given (not to whatever the CA sends), none expired. A root at the end
 * of the chain (Istio's CA sends one) is dropped: the roots come from our root file.
 */
import { X509Certificate } from "node:crypto";
import { ZtError } from "@zt/errors";
import { chainsToRoot, splitPemCerts } from "@zt/identity";

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

function invalid(message: string, cause?: unknown): never {
  throw new ZtError("CERT_RESPONSE_INVALID", message, cause === undefined ? undefined : { cause });
}

/** The URI SANs of a certificate, in order. */
export function uriSans(cert: X509Certificate): string[] {
  const out: string[] = [];
  for (const part of (cert.subjectAltName ?? "").split(", ")) if (part.startsWith("URI:")) out.push(part.slice(4));
  return out;
}

/**
 * The chain to use (leaf first, no root), or CERT_RESPONSE_INVALID saying what is wrong.
 * `spki` is the DER SubjectPublicKeyInfo of the CSR's key; `roots` the trusted roots.
 */
export function checkCaAnswer(address: string, identity: string, chain: readonly string[], spki: Buffer, roots: readonly X509Certificate[]): string[] {
  const from = `the CA at ${address}`;
  if (chain.length === 0) invalid(`${from} answered no certificate for ${identity}`);
  const pems: string[] = [];
  for (const [i, element] of chain.entries()) {
    const blocks = splitPemCerts(element);
    if (blocks.length === 0) invalid(`${from} answered element ${i} of the chain for ${identity} without a PEM certificate`);
    pems.push(...blocks);
  }
  let certs: X509Certificate[];
  try {
    certs = pems.map((p) => new X509Certificate(p));
  } catch (err) {
    invalid(`${from} answered a corrupt certificate for ${identity}: ${(err as Error).message}`, err);
  }
  const leaf = certs[0]!;
  const sans = uriSans(leaf);
  if (sans.length !== 1 || sans[0] !== identity) {
    invalid(`${from} answered a certificate for ${sans.length ? sans.join(", ") : "no URI SAN"}, wanted exactly ${identity}`);
  }
  if (leaf.ca) invalid(`${from} answered a CA certificate (basicConstraints CA:TRUE) as the leaf for ${identity}`);
  // Workload leaves serve and dial mTLS: an extended key usage, when present, must allow both.
  const usage = leaf.keyUsage;
  if (usage !== undefined && !(usage.includes(SERVER_AUTH) && usage.includes(CLIENT_AUTH))) {
    invalid(`${from} answered a leaf for ${identity} whose extended key usage (${usage.join(", ")}) does not allow both serverAuth and clientAuth`);
  }
  if (!leaf.publicKey.export({ type: "spki", format: "der" }).equals(spki)) {
    invalid(`${from} answered a certificate for ${identity} with another public key than the one of our CSR`);
  }
  const last = certs.at(-1)!;
  const endsInRoot = certs.length > 1 && roots.some((r) => r.fingerprint256 === last.fingerprint256);
  const used = endsInRoot ? certs.slice(0, -1) : certs;
  const now = Date.now();
  for (const c of used) {
    if (new Date(c.validTo).getTime() <= now) invalid(`${from} answered a chain for ${identity} with a certificate (subject "${c.subject.replace(/\n/g, ", ")}") that expired at ${new Date(c.validTo).toISOString()}`);
    if (new Date(c.validFrom).getTime() > now + 60_000) invalid(`${from} answered a chain for ${identity} with a certificate not valid before ${new Date(c.validFrom).toISOString()}`);
  }
  for (const c of used.slice(1)) if (!c.ca) invalid(`${from} answered a chain for ${identity} whose intermediate (subject "${c.subject.replace(/\n/g, ", ")}") is not a CA certificate`);
  if (!chainsToRoot(leaf, used.slice(1), roots)) {
    invalid(`${from} answered a chain for ${identity} that does not verify to any root of the configured root certificates`);
  }
  return endsInRoot ? pems.slice(0, -1) : pems;
}
