import { afterEach, describe, expect, it } from "vitest";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { readFile, stat, writeFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import forge from "node-forge";
import { loadOrCreateCa } from "./ca.js";
import { createKeyAndCsr } from "./csr.js";
import { clientConnectOptions, peerIdentity } from "./tls.js";
import { connect, issue, roundTrip, startEchoServer, tempDir, writeIntermediateCaDir } from "./test-support/helpers.js";

const TD = "cluster.local";
const ID = `spiffe://${TD}/ns/default/sa/app`;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
async function dir(): Promise<string> {
  const d = await tempDir();
  cleanups.push(d.cleanup);
  return d.path;
}

describe("loadOrCreateCa: generated root", () => {
  it("generates into a missing directory and reloads the same root", async () => {
    const path = join(await dir(), "nested", "cacerts");
    const ca = await loadOrCreateCa({ dir: path, trustDomain: TD });
    expect(ca.generated).toBe(true);
    const files = await Promise.all(
      ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"].map((f) => readFile(join(path, f), "utf8")),
    );
    expect(files[1]).toContain("BEGIN PRIVATE KEY");
    expect((await stat(join(path, "ca-key.pem"))).mode & 0o777).toBe(0o600);
    expect(files[2]).toBe(files[0]);
    expect(files[3]).toBe(files[0]);

    const root = new X509Certificate(files[0]!);
    expect(root.ca).toBe(true);
    expect(root.subject).toBe(`O=${TD}`);
    expect(root.verify(root.publicKey)).toBe(true);
    const years = (Date.parse(root.validTo) - Date.parse(root.validFrom)) / (365 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);
    const ku = forge.pki.certificateFromPem(files[0]!).getExtension("keyUsage") as Record<string, boolean>;
    expect(ku).toMatchObject({ keyCertSign: true, cRLSign: true, critical: true });

    const again = await loadOrCreateCa({ dir: path, trustDomain: TD });
    expect(again.generated).toBe(false);
    expect(again.roots()).toEqual(ca.roots());
    expect(ca.roots()).toHaveLength(1);
  });

  it("generates into an existing empty directory", async () => {
    const ca = await loadOrCreateCa({ dir: await dir(), trustDomain: TD });
    expect(ca.generated).toBe(true);
  });
});

describe("loadOrCreateCa: refusals", () => {
  async function generated(): Promise<string> {
    const path = await dir();
    await loadOrCreateCa({ dir: path, trustDomain: TD });
    return path;
  }

  it("names the missing files of an incomplete directory", async () => {
    const path = await generated();
    await unlink(join(path, "ca-key.pem"));
    await unlink(join(path, "cert-chain.pem"));
    const err = await loadOrCreateCa({ dir: path, trustDomain: TD }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CA_FILES_INCOMPLETE" });
    expect((err as Error).message).toContain("missing ca-key.pem, cert-chain.pem");
  });

  it("refuses an EC key, explaining that only RSA is supported", async () => {
    const path = await generated();
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await writeFile(join(path, "ca-key.pem"), privateKey.export({ type: "pkcs8", format: "pem" }));
    const err = await loadOrCreateCa({ dir: path, trustDomain: TD }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CA_KEY_UNSUPPORTED" });
    expect((err as Error).message).toMatch(/ec key.*node-forge.*RSA/);
  });

  it("refuses a key that does not belong to the certificate", async () => {
    const path = await generated();
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await writeFile(join(path, "ca-key.pem"), privateKey.export({ type: "pkcs1", format: "pem" }));
    await expect(loadOrCreateCa({ dir: path, trustDomain: TD })).rejects.toMatchObject({ code: "CA_KEY_MISMATCH" });
  });

  it("refuses a corrupt certificate", async () => {
    const path = await generated();
    await writeFile(join(path, "ca-cert.pem"), "not a certificate\n");
    await expect(loadOrCreateCa({ dir: path, trustDomain: TD })).rejects.toMatchObject({ code: "CA_CERT_INVALID" });
  });

  it("refuses a ca-cert that does not chain to root-cert", async () => {
    const path = await generated();
    const other = await dir();
    await loadOrCreateCa({ dir: other, trustDomain: TD });
    await writeFile(join(path, "root-cert.pem"), await readFile(join(other, "root-cert.pem")));
    await expect(loadOrCreateCa({ dir: path, trustDomain: TD })).rejects.toMatchObject({ code: "CA_CHAIN_INVALID" });
  });

  it("refuses a leaf certificate posing as the CA", async () => {
    const path = await generated();
    const ca = await loadOrCreateCa({ dir: path, trustDomain: TD });
    const leaf = await issue(ca, ID);
    await writeFile(join(path, "ca-cert.pem"), leaf.certChain[0]!);
    await writeFile(join(path, "ca-key.pem"), leaf.keyPem);
    await expect(loadOrCreateCa({ dir: path, trustDomain: TD })).rejects.toMatchObject({ code: "CA_CERT_NOT_CA" });
  });
});

describe("BuiltinCa.sign", () => {
  it("issues a workload leaf with exactly the identity SAN", async () => {
    const ca = await loadOrCreateCa({ dir: await dir(), trustDomain: TD });
    const { csrPem } = await createKeyAndCsr(ID);
    const before = Date.now();
    const { certChain, roots } = await ca.sign(csrPem, ID, 3_600_000);
    expect(certChain).toHaveLength(1); // a self-signed root is not repeated in the chain
    expect(roots).toEqual(ca.roots());
    const leaf = new X509Certificate(certChain[0]!);
    const root = new X509Certificate(roots[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(leaf.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
    expect(Date.parse(leaf.validFrom)).toBeLessThanOrEqual(before - 59_000);
    expect(Date.parse(leaf.validTo)).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    const forgeLeaf = forge.pki.certificateFromPem(certChain[0]!);
    const ku = forgeLeaf.getExtension("keyUsage") as Record<string, boolean>;
    expect(ku).toMatchObject({ digitalSignature: true, keyEncipherment: true, keyCertSign: false });
    const aki = forgeLeaf.getExtension("authorityKeyIdentifier") as { value: string };
    const ski = forge.pki.certificateFromPem(roots[0]!).getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier: string };
    expect(forge.util.bytesToHex(aki.value)).toContain(ski.subjectKeyIdentifier);
  });

  it("rejects identities outside the trust domain and bad CSRs", async () => {
    const ca = await loadOrCreateCa({ dir: await dir(), trustDomain: TD });
    const { csrPem } = await createKeyAndCsr(ID);
    for (const id of ["spiffe://other/ns/default/sa/app", "spiffe://cluster.local/ns/a", "app"]) {
      await expect(ca.sign(csrPem, id, 1000)).rejects.toMatchObject({ code: "CA_IDENTITY_REJECTED" });
    }
    await expect(ca.sign("garbage", ID, 1000)).rejects.toMatchObject({ code: "CSR_INVALID" });
    // Swap the public key after signing: the CSR signature no longer verifies.
    const csr = forge.pki.certificationRequestFromPem(csrPem);
    const other = forge.pki.certificationRequestFromPem((await createKeyAndCsr(ID)).csrPem);
    csr.publicKey = other.publicKey;
    csr.certificationRequestInfo = null;
    await expect(ca.sign(forge.pki.certificationRequestToPem(csr), ID, 1000)).rejects.toMatchObject({ code: "CSR_INVALID" });
  });
});

describe("intermediate CA", () => {
  it("signs leaves whose chain verifies in a real handshake", async () => {
    const path = await dir();
    const { rootPem } = await writeIntermediateCaDir(path, TD);
    const ca = await loadOrCreateCa({ dir: path, trustDomain: TD });
    expect(ca.generated).toBe(false);
    expect(ca.roots()).toEqual([rootPem]);
    const serverId = `spiffe://${TD}/ns/a/sa/server`;
    const [serverCert, clientCert] = await Promise.all([issue(ca, serverId), issue(ca, ID)]);
    expect(serverCert.certChain).toHaveLength(2); // leaf + intermediate, not the root
    const server = await startEchoServer(() => serverCert, TD);
    try {
      const sock = await connect(server.port, clientConnectOptions(clientCert, [serverId]));
      expect(sock.authorized).toBe(true);
      expect(await roundTrip(sock, "hello")).toBe("hello");
      expect(peerIdentity(server.accepted[0]!)?.id).toBe(ID);
      sock.destroy();
    } finally {
      await server.close();
    }
  });
});
