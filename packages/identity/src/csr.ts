import { generateKeyPair } from "node:crypto";
import { promisify } from "node:util";
import forge from "node-forge";
import { forgePrivateKey, forgePublicKey } from "./pem.js";

const generateKeyPairAsync = promisify(generateKeyPair);

export interface KeyAndCsr {
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"), ready for node:tls. */
  readonly keyPem: string;
  /** PKCS#10 PEM with an extensionRequest carrying the identity as URI SAN. */
  readonly csrPem: string;
}

/** A fresh RSA 2048 key (native, off the event loop) and a SHA-256 CSR for `identity`. */
export async function createKeyAndCsr(identity: string): Promise<KeyAndCsr> {
  const { privateKey } = await generateKeyPairAsync("rsa", { modulusLength: 2048 });
  const key = forgePrivateKey(privateKey);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forgePublicKey(key);
  csr.setSubject([]);
  csr.setAttributes([
    {
      name: "extensionRequest",
      extensions: [{ name: "subjectAltName", altNames: [{ type: 6, value: identity }] }],
    },
  ]);
  csr.sign(key, forge.md.sha256.create());
  return {
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    csrPem: forge.pki.certificationRequestToPem(csr),
  };
}
