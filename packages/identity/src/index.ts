export { formatSpiffe, parseSpiffe, type SpiffeParts } from "./spiffe.js";
export type { CertificateSource, SignedCertificate } from "./types.js";
export { loadOrCreateCa, type BuiltinCa, type CaOptions, type ServingCertificate } from "./ca.js";
export { CA_FILES, chainsToRoot } from "./ca-files.js";
export { createKeyAndCsr, type KeyAndCsr } from "./csr.js";
export {
  backoffMs,
  createCertManager,
  type CertEvent,
  type CertManager,
  type CertManagerOptions,
} from "./cert-manager.js";
export { toWorkloadCertificate, type CertDump, type CertDumpEntry, type WorkloadCertificate } from "./workload-cert.js";
export {
  HBONE_ALPN,
  checkClientIdentity,
  clientConnectOptions,
  peerIdentity,
  serverSocketOptions,
  type PeerIdentity,
} from "./tls.js";
export { verifyCsr, type VerifiedCsr } from "./csr-verify.js";
export { splitPemCerts } from "./pem.js";
