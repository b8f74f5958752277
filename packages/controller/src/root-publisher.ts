/**
 * The mesh root as ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) in the
 * controller's namespace, as istiod publishes it: what the agents mount as
 * CA_ROOT_CA/XDS_ROOT_CA. Created or replaced at start, retried with backoff until it
 * succeeds; the result is in /debug/status.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";

export const ROOT_CONFIGMAP = "istio-ca-root-cert";

export interface RootPublisher {
  status(): { readonly published: boolean; readonly lastError: string | null; readonly attempts: number };
  close(): void;
}

export async function publishRoot(kc: KubeConfig, namespace: string, rootPem: string, logger: Logger): Promise<RootPublisher> {
  const { CoreV1Api } = await import("@kubernetes/client-node");
  const api = kc.makeApiClient(CoreV1Api);
  let published = false;
  let lastError: string | null = null;
  let attempts = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const body = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: ROOT_CONFIGMAP, namespace, labels: { "istio.io/config": "true" } }, data: { "root-cert.pem": rootPem } };
  const attempt = async (): Promise<void> => {
    attempts++;
    try {
      try {
        await api.replaceNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace, body });
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
        await api.createNamespacedConfigMap({ namespace, body });
      }
      published = true;
      lastError = null;
      logger.info({ namespace, name: ROOT_CONFIGMAP }, `mesh root published as ConfigMap ${namespace}/${ROOT_CONFIGMAP}`);
    } catch (err) {
      const message = `cannot publish ConfigMap ${namespace}/${ROOT_CONFIGMAP}: ${(err as Error).message}`;
      if (message !== lastError) logger.error({ code: "KUBE_REQUEST_FAILED", namespace }, `${message}; agents cannot mount the mesh root until it exists; retrying`);
      lastError = message;
      if (!closed) timer = setTimeout(() => void attempt(), Math.min(60_000, 1000 * 2 ** Math.min(attempts, 6)));
    }
  };
  await attempt();
  return {
    status: () => ({ published, lastError, attempts }),
    close: () => {
      closed = true;
      clearTimeout(timer);
    },
  };
}
