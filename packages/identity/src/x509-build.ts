/**
 * Certificate assembly with node-forge. The issuer name is copied byte for
 * byte from the issuing certificate (forge would otherwise re-encode it, and
 * chain building compares names), then the TBSCertificate is signed with the
 * issuer's RSA key (SHA-256). node-forge signs with RSA keys only.
 */
import forge from "node-forge";
import { randomSerialHex } from "./pem.js";

const { asn1, pki } = forge;
const pkiInternal = pki as typeof pki & {
  getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1;
};

export interface CertTemplate {
  readonly publicKey: forge.pki.PublicKey;
  /** Subject attributes; empty for workload certificates (the identity lives in the SAN). */
  readonly subject: forge.pki.CertificateField[];
  /** DER-derived Name of the issuer; omitted for a self-signed certificate. */
  readonly issuerName?: forge.asn1.Asn1;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** node-forge extension descriptors. */
  readonly extensions: object[];
}

export interface BuiltCert {
  readonly pem: string;
  readonly serialHex: string;
}

/** Builds and signs a certificate; returns its PEM. */
export function buildCertificate(t: CertTemplate, signingKey: forge.pki.rsa.PrivateKey): BuiltCert {
  const cert = pki.createCertificate();
  const serialHex = randomSerialHex();
  cert.serialNumber = serialHex;
  cert.publicKey = t.publicKey;
  cert.validity.notBefore = t.notBefore;
  cert.validity.notAfter = t.notAfter;
  cert.setSubject(t.subject);
  cert.setIssuer(t.subject);
  cert.setExtensions(t.extensions);
  const oid = pki.oids["sha256WithRSAEncryption"];
  if (oid === undefined) throw new Error("node-forge lacks the sha256WithRSAEncryption OID");
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  const tbs = pkiInternal.getTBSCertificate(cert);
  if (t.issuerName) {
    const fields = tbs.value as forge.asn1.Asn1[];
    // TBSCertificate: [0] version, serialNumber, signature, issuer, ...
    fields[3] = t.issuerName;
  }
  cert.tbsCertificate = tbs;
  const md = forge.md.sha256.create();
  md.update(asn1.toDer(tbs).getBytes());
  cert.signature = signingKey.sign(md);
  return { pem: pki.certificateToPem(cert).replace(/\r\n/g, "\n"), serialHex };
}

/** The subject Name of a DER certificate, as an ASN.1 node, for use as an issuer name. */
export function subjectNameOf(certDer: Buffer): forge.asn1.Asn1 {
  const certAsn1 = asn1.fromDer(forge.util.createBuffer(certDer.toString("binary")));
  const tbs = (certAsn1.value as forge.asn1.Asn1[])[0];
  const fields = tbs?.value as forge.asn1.Asn1[] | undefined;
  if (!fields) throw new Error("certificate has no TBSCertificate");
  // An explicit version is context-specific tag [0]; v1 certificates omit it.
  const offset = fields[0]?.tagClass === asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subject = fields[offset + 4];
  if (!subject) throw new Error("certificate has no subject");
  return subject;
}
