/** What a certificate authority hands back for one CSR. PEM strings, one certificate each. */
export interface SignedCertificate {
  /** Leaf first, then intermediates up to (not including) a self-signed root. */
  readonly certChain: string[];
  /** Trust anchors the peer's chain must end in (the mesh roots). */
  readonly roots: string[];
}

/** Anything that signs workload CSRs: the built-in CA, later a remote Istio CA client. */
export interface CertificateSource {
  sign(csrPem: string, identity: string, ttlMs: number): Promise<SignedCertificate>;
}
