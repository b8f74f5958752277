/**
 * The mesh root as ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) in the
 * controller's namespace, as istiod publishes it: what the agents mount as
 * CA_ROOT_CA/XDS_ROOT_CA. Created or replaced at start, retried with backoff until it
 * succeeds; then read again every `checkMs` (one timer) and put back when someone deleted
 * or edited it, as istiod does. The result is in /debug/status.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";

export const ROOT_CONFIGMAP = "istio-ca-root-cert";

export interface RootPublisher {
  /** `restored`: times the ConfigMap was found deleted or edited and put back. */
  status(): { readonly published: boolean; readonly lastError: string | null; readonly attempts: number; readonly restored: number };
  close(): void;
}

export interface RootPublishOptions {
  /** The first retry's delay (doubled each time, at most 64 times it, capped at a minute); default 1 s. */
  readonly retryBaseMs?: number;
  /** How often the published ConfigMap is read to see that it is still there and unchanged; default 30 s. */
  readonly checkMs?: number;
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
  let restored = 0;
  let checker: NodeJS.Timeout | undefined;
  const body = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: ROOT_CONFIGMAP, namespace, labels: { "istio.io/config": "true" } }, data: { "root-cert.pem": rootPem } };
  /** Replaced, or created when there is none. */
  const put = async (): Promise<void> => {
    try {
      await api.replaceNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace, body });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await api.createNamespacedConfigMap({ namespace, body });
    }
  };
  const attempt = async (): Promise<void> => {
    if (closed) return;
    attempts++;
    try {
      await put();
      published = true;
      lastError = null;
      logger.info({ namespace, name: ROOT_CONFIGMAP }, `mesh root published as ConfigMap ${namespace}/${ROOT_CONFIGMAP}`);
      if (!checker && !closed) {
        checker = setInterval(() => void check(), o.checkMs ?? 30_000);
        checker.unref();
      }
    } catch (err) {
      const message = `cannot publish ConfigMap ${namespace}/${ROOT_CONFIGMAP}: ${describe(err)}`;
      if (message !== lastError) logger.warn({ code: "KUBE_REQUEST_FAILED", namespace }, `${message}; agents cannot mount the mesh root until it exists; retrying`);
      lastError = message;
      if (!closed) timer = setTimeout(() => void attempt(), Math.min(60_000, retryBaseMs * 2 ** Math.min(attempts - 1, 6)));
    }
  };
  let checking = false;
  /** Still there with our root? Else put it back (a failure is logged once, and tried again at the next check). */
  const check = async (): Promise<void> => {
    if (closed || checking) return;
    checking = true;
    try {
      let found: { data?: Record<string, string> } | undefined;
      try {
        found = await api.readNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace });
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
      }
      if (found?.data?.["root-cert.pem"] === rootPem || closed) return;
      await put();
      restored++;
      lastError = null;
      logger.warn({ namespace, name: ROOT_CONFIGMAP, restored }, `ConfigMap ${namespace}/${ROOT_CONFIGMAP} was ${found ? "edited" : "deleted"}; the mesh root is published in it again`);
    } catch (err) {
      const message = `cannot check or restore ConfigMap ${namespace}/${ROOT_CONFIGMAP}: ${describe(err)}`;
      if (message !== lastError) logger.warn({ code: "KUBE_REQUEST_FAILED", namespace }, `${message}; trying again at the next check`);
      lastError = message;
    } finally {
      checking = false;
    }
  };
  await attempt();
  return {
    status: () => ({ published, lastError, attempts, restored }),
    close: () => {
      closed = true;
      clearTimeout(timer);
      clearInterval(checker);
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
