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

export interface RootPublishOptions {
  /** The first retry's delay (doubled each time, at most 64 times it, capped at a minute); default 1 s. */
  readonly retryBaseMs?: number;
}

export async function publishRoot(kc: KubeConfig, namespace: string, rootPem: string, logger: Logger, o: RootPublishOptions = {}): Promise<RootPublisher> {
  const retryBaseMs = o.retryBaseMs ?? 1000;
  const { CoreV1Api } = await import("@kubernetes/client-node");
  const api = kc.makeApiClient(CoreV1Api);
  let published = false;
  let lastError: string | null = null;
  let attempts = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const body = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: ROOT_CONFIGMAP, namespace, labels: { "istio.io/config": "true" } }, data: { "root-cert.pem": rootPem } };
  const attempt = async (): Promise<void> => {
    if (closed) return;
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
      const message = `cannot publish ConfigMap ${namespace}/${ROOT_CONFIGMAP}: ${describe(err)}`;
      if (message !== lastError) logger.warn({ code: "KUBE_REQUEST_FAILED", namespace }, `${message}; agents cannot mount the mesh root until it exists; retrying`);
      lastError = message;
      if (!closed) timer = setTimeout(() => void attempt(), Math.min(60_000, retryBaseMs * 2 ** Math.min(attempts - 1, 6)));
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

/** An API error as the API server put it ("HTTP 403: configmaps ... is forbidden ..."), not the client's dump of body and headers. */
function describe(err: unknown): string {
  const e = err as { code?: unknown; body?: unknown; message?: string };
  if (typeof e.code !== "number") return e.message ?? String(err);
  let body = e.body;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch {
      // not a Status: the code alone
    }
  }
  const message = (body as { message?: unknown } | undefined)?.message;
  return `HTTP ${e.code}${typeof message === "string" ? `: ${message}` : ""}`;
}
