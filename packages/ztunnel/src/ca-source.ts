/**
 * Which CA signs the node's workload certificates: the Istio CA at CA_ADDRESS when it is
 * set (istiod, or zt-controller), else the built-in one (the `cacerts` directory). Said
 * once in the log at start. A remote CA that fails does not stop the agent: the
 * certificate manager retries with backoff, and readiness lists the pending certificates.
 */
import type { Logger } from "pino";
import { loadOrCreateCa, type CertificateSource } from "@zt/identity";
import { createIstioCaClient } from "@zt/istio";
import type { Config } from "./config.js";

export interface CaSource {
  readonly source: CertificateSource;
  close(): void;
}

export async function openCaSource(config: Config, logger: Logger): Promise<CaSource> {
  if (config.caAddress !== undefined) {
    const client = createIstioCaClient({
      address: config.caAddress,
      rootCaPath: config.caRootCa,
      altHostname: config.altCaHostname,
      tokenPath: config.authToken,
      clusterId: config.clusterId,
    });
    logger.info({ ca: config.caAddress, rootCa: config.caRootCa, tlsName: config.altCaHostname, token: config.authToken }, `certificates from the Istio CA at ${config.caAddress}`);
    return { source: client, close: () => client.close() };
  }
  const ca = await loadOrCreateCa({ dir: config.caCertsDir, trustDomain: config.trustDomain });
  logger.info({ ca: "built-in", dir: ca.dir, generated: ca.generated }, `certificates from the built-in CA (${ca.dir})`);
  return { source: ca, close: () => undefined };
}
