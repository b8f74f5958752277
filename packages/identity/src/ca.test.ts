import { afterEach, describe, expect, it } from "vitest";
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, stat, writeFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import forge from "node-forge";
import { loadOrCreateCa } from "./ca.js";
import { createKeyAndCsr } from "./csr.js";
import { verifyCsr } from "./csr-verify.js";
import { clientConnectOptions, peerIdentity } from "./tls.js";
import { connect, issue, keyIdFromText, opensslText, roundTrip, startEchoServer, tempDir, writeIntermediateCaDir } from "./test-support/helpers.js";

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
    expect(root.publicKey.asymmetricKeyType).toBe("rsa");
    const text = opensslText("x509", files[0]!);
    expect(text).toContain("Signature Algorithm: sha256WithRSAEncryption");
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s*CA:TRUE\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s*Certificate Sign, CRL Sign\n/);
    expect(keyIdFromText(text, "X509v3 Subject Key Identifier")).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){19}$/);

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

  it("refuses a key it cannot sign with (Ed25519, an EC curve other than P-256/384/521), naming what it can", async () => {
    const path = await generated();
    for (const [type, opts, shown] of [
      ["ed25519", {}, "ed25519 key"],
      ["ec", { namedCurve: "secp256k1" }, "ec (secp256k1) key"],
    ] as const) {
      const { privateKey } = generateKeyPairSync(type as "ec", opts as { namedCurve: string });
      await writeFile(join(path, "ca-key.pem"), privateKey.export({ type: "pkcs8", format: "pem" }));
      const err = await loadOrCreateCa({ dir: path, trustDomain: TD }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "CA_KEY_UNSUPPORTED" });
      expect((err as Error).message).toContain(shown);
      expect((err as Error).message).toContain("RSA, or EC on P-256, P-384 or P-521");
    }
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

describe("createKeyAndCsr", () => {
  it("makes an ECDSA P-256 key and a SHA-256 CSR with an empty subject and the identity as critical URI SAN, as ztunnel does", async () => {
    const { keyPem, csrPem } = await createKeyAndCsr(ID);
    const key = createPrivateKey(keyPem);
    expect(keyPem).toContain("BEGIN PRIVATE KEY");
    expect(key.asymmetricKeyType).toBe("ec");
    expect(key.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const text = opensslText("req", csrPem); // -verify: openssl checks the self-signature
    expect(text).toMatch(/Subject: *\n/);
    expect(text).toContain("NIST CURVE: P-256");
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\n\s*URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/app\n/);
    expect(text).toContain("Signature Algorithm: ecdsa-with-SHA256");
    expect((await verifyCsr(csrPem)).publicKey.equals(createPublicKey(key))).toBe(true);
  });
});

describe("BuiltinCa.sign", () => {
  it("issues a workload leaf with exactly the identity SAN, signed by the RSA root with sha256WithRSAEncryption", async () => {
    const ca = await loadOrCreateCa({ dir: await dir(), trustDomain: TD });
    const { keyPem, csrPem } = await createKeyAndCsr(ID);
    const before = Date.now();
    const { certChain, roots } = await ca.sign(csrPem, ID, 3_600_000);
    expect(certChain).toHaveLength(1); // a self-signed root is not repeated in the chain
    expect(roots).toEqual(ca.roots());
    const leaf = new X509Certificate(certChain[0]!);
    const root = new X509Certificate(roots[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(leaf.subject ?? "").toBe("");
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(leaf.publicKey.asymmetricKeyType).toBe("ec");
    expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    expect(leaf.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
    expect(Date.parse(leaf.validFrom)).toBeLessThanOrEqual(before - 59_000);
    expect(Date.parse(leaf.validTo)).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    const text = opensslText("x509", certChain[0]!);
    expect(text).toContain("Signature Algorithm: sha256WithRSAEncryption");
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s*CA:FALSE\n/);
    // Istio's CA: digitalSignature + keyEncipherment on every workload leaf, serverAuth + clientAuth.
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s*Digital Signature, Key Encipherment\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n\s*TLS Web Server Authentication, TLS Web Client Authentication\n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\n\s*URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/app\n/);
    const rootSki = keyIdFromText(opensslText("x509", roots[0]!), "X509v3 Subject Key Identifier");
    expect(rootSki).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){19}$/);
    expect(keyIdFromText(text, "X509v3 Authority Key Identifier")).toBe(rootSki);
  });

  it("rejects identities outside the trust domain and bad CSRs", async () => {
    const ca = await loadOrCreateCa({ dir: await dir(), trustDomain: TD });
    const { csrPem } = await createKeyAndCsr(ID);
    for (const id of ["spiffe://other/ns/default/sa/app", "spiffe://cluster.local/ns/a", "app"]) {
      await expect(ca.sign(csrPem, id, 1000)).rejects.toMatchObject({ code: "CA_IDENTITY_REJECTED" });
    }
    await expect(ca.sign("garbage", ID, 1000)).rejects.toMatchObject({ code: "CSR_INVALID" });
    const der = (pem: string): forge.asn1.Asn1 => forge.asn1.fromDer(Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64").toString("binary"));
    const pem = (node: forge.asn1.Asn1): string =>
      `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(forge.asn1.toDer(node).getBytes(), "binary").toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    // Swap the public key after signing: the CSR signature no longer verifies.
    const csr = der(csrPem);
    const other = der((await createKeyAndCsr(ID)).csrPem);
    const info = (n: forge.asn1.Asn1): forge.asn1.Asn1[] => ((n.value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[]);
    info(csr)[2] = info(other)[2]!;
    const swapped = await ca.sign(pem(csr), ID, 1000).catch((e: unknown) => e);
    expect(swapped).toMatchObject({ code: "CSR_INVALID", message: expect.stringContaining("does not verify") });
    // Truncated DER.
    const cut = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64").subarray(0, 100).toString("base64");
    await expect(ca.sign(`-----BEGIN CERTIFICATE REQUEST-----\n${cut}\n-----END CERTIFICATE REQUEST-----\n`, ID, 1000)).rejects.toMatchObject({ code: "CSR_INVALID" });
  });
});

describe("CA keys and intermediates", () => {
  /** An EC root made by openssl, as an operator might bring it (create-cacerts.sh with an EC key). */
  async function opensslEcRoot(path: string): Promise<{ rootPem: string }> {
    await mkdir(path, { recursive: true });
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256", "-days", "30",
      "-subj", `/O=${TD}/CN=openssl EC root`, "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", join(path, "ca-key.pem"), "-out", join(path, "ca-cert.pem"),
    ], { stdio: "ignore" });
    const rootPem = await readFile(join(path, "ca-cert.pem"), "utf8");
    await writeFile(join(path, "root-cert.pem"), rootPem);
    await writeFile(join(path, "cert-chain.pem"), rootPem);
    return { rootPem };
  }

  const cases = [
    { name: "RSA root -> RSA intermediate", setup: (p: string) => writeIntermediateCaDir(p, TD), chain: 2, signature: "sha256WithRSAEncryption" },
    { name: "EC P-256 root -> EC P-256 intermediate (SEC1 key file)", setup: (p: string) => writeIntermediateCaDir(p, TD, { rootKey: "ec-p256", interKey: "ec-p256" }), chain: 2, signature: "ecdsa-with-SHA256" },
    { name: "RSA root -> EC P-384 intermediate", setup: (p: string) => writeIntermediateCaDir(p, TD, { interKey: "ec-p384" }), chain: 2, signature: "ecdsa-with-SHA384" },
    { name: "an openssl-made EC P-256 root", setup: opensslEcRoot, chain: 1, signature: "ecdsa-with-SHA256" },
  ];

  for (const c of cases) {
    it(`${c.name}: signs with the issuer's algorithm, and the chain verifies in a real mTLS handshake both ways`, async () => {
      const path = await dir();
      const { rootPem } = await c.setup(path);
      const ca = await loadOrCreateCa({ dir: path, trustDomain: TD });
      expect(ca.generated).toBe(false);
      expect(ca.roots()).toEqual([rootPem]);
      const serverId = `spiffe://${TD}/ns/a/sa/server`;
      const [serverCert, clientCert] = await Promise.all([issue(ca, serverId), issue(ca, ID)]);
      expect(serverCert.certChain).toHaveLength(c.chain); // leaf (+ intermediate), never the root
      const text = opensslText("x509", serverCert.certChain[0]!);
      expect(text).toContain(`Signature Algorithm: ${c.signature}`);
      expect(text).toContain("NIST CURVE: P-256"); // the workload key, whatever the CA's
      const issuer = new X509Certificate(serverCert.certChain[1] ?? rootPem);
      expect(keyIdFromText(text, "X509v3 Authority Key Identifier")).toBe(keyIdFromText(opensslText("x509", issuer.toString()), "X509v3 Subject Key Identifier"));
      const server = await startEchoServer(() => serverCert, TD);
      try {
        const sock = await connect(server.port, clientConnectOptions(clientCert, [serverId]));
        expect(sock.authorized).toBe(true);
        expect(peerIdentity(sock)?.id).toBe(serverId);
        expect(await roundTrip(sock, "hello")).toBe("hello");
        expect(peerIdentity(server.accepted[0]!)?.id).toBe(ID);
        expect(server.errors).toEqual([]);
        sock.destroy();
      } finally {
        await server.close();
      }
    });
  }
});

describe("issueServing: a control plane's serving certificate", () => {
  it("is verified by name and by IP against the mesh root, and by nothing else", async () => {
    const tls = await import("node:tls");
    const ca = await loadOrCreateCa({ dir: await dir(), trustDomain: TD });
    const s = await ca.issueServing({ dns: ["zt-controller.istio-system.svc", "zt-controller.istio-system.svc.cluster.local"], ips: ["127.0.0.1", "::1"] }, 3_600_000);
    const leaf = new X509Certificate(s.certChain[0]!);
    expect(leaf.subjectAltName).toBe("DNS:zt-controller.istio-system.svc, DNS:zt-controller.istio-system.svc.cluster.local, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    expect(leaf.checkPrivateKey(createPrivateKey(s.keyPem))).toBe(true);
    expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    const server = tls.createServer({ cert: s.certChain.join(""), key: s.keyPem, minVersion: "TLSv1.3" }, (sock) => sock.end("ok"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => server.close(() => r())));
    const port = (server.address() as { port: number }).port;
    const dial = (servername: string | undefined): Promise<string> =>
      new Promise((resolve) => {
        const c = tls.connect({ host: "127.0.0.1", port, ca: s.roots, ...(servername ? { servername } : {}) }, () => c.once("data", (d) => resolve(`ok:${String(d)}`)));
        c.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
    expect(await dial("zt-controller.istio-system.svc")).toBe("ok:ok");
    expect(await dial(undefined)).toBe("ok:ok"); // by IP
    expect(await dial("istiod.istio-system.svc")).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
  });
});
