/**
 * The emulated cluster's Kubernetes mode: its pods, services, EndpointSlices and policies
 * are objects in the FAKE API server, which the agents follow (DISCOVERY=kubernetes, a
 * kubeconfig with a service-account token) as they would a real one. The harness plays
 * kubelet and EndpointSlice controller: it writes each pod's IP, node and Ready condition,
 * and keeps one slice per service in step with the pods it selects. The API server runs in
 * this process on a unix socket; in each node's namespace a forwarder serves it on
 * 127.0.0.1:6443 (a path is the same in every namespace, an address is not).
 */
import { once } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import type { Lab } from "@zt/lab";
import type { ClusterPod, ClusterServiceSpec } from "./cluster.js";
import { fakeKubeconfig, startFakeKubeApi, type FakeKubeApi } from "./fake-kube/index.js";
import { RESOURCES } from "./fake-kube/store.js";

const RESOURCE_PODS = RESOURCES.find((r) => r.plural === "pods")!;

/** What the API says of a pod: the cluster's own record of it. */
type KubePod = Pick<ClusterPod, "name" | "namespace" | "serviceAccount" | "ip" | "node" | "enrolled">;

export interface ClusterKube {
  readonly api: FakeKubeApi;
  /** The agents' environment: DISCOVERY=kubernetes and the kubeconfig. */
  readonly env: Record<string, string>;
  /** The kubeconfig of zt-controller (its own service account, which may create TokenReviews). */
  readonly controllerKubeconfig: string;
  /** A token for node's ztunnel pod (istio-system/ztunnel, audience istio-ca), as the kubelet projects it. */
  agentToken(node: string, spec?: { audiences?: string[]; expiresAt?: Date; serviceAccount?: string }): string;
  /** root-cert.pem of ConfigMap istio-system/istio-ca-root-cert, if someone published it. */
  publishedRoot(): string | undefined;
  /** Put a pod into the API (as the kubelet reports it running and ready), with the slices of the services that select it. */
  announce(pod: string): void;
  /** Delete a pod from the API, and from its services' slices. */
  withdraw(pod: string): void;
  stop(): Promise<void>;
}

const TOKEN = "zt-cluster-ztunnel-token";
/** zt-controller's own token: reads, and TokenReviews. */
const CONTROLLER_TOKEN = "zt-cluster-controller-token";
const SVC_LABEL = (svc: string): string => `svc.zt-cluster/${svc}`;

export async function startClusterKube(
  lab: Lab,
  dir: string,
  tool: string,
  pods: readonly KubePod[],
  services: readonly ClusterServiceSpec[],
  policies: readonly Record<string, unknown>[],
  announced: (pod: string) => boolean,
): Promise<ClusterKube> {
  const socketPath = path.join(dir, "kube-api.sock");
  const api = await startFakeKubeApi({
    socketPath,
    advertise: "https://127.0.0.1:6443",
    tokens: {
      [TOKEN]: { user: "system:serviceaccount:istio-system:ztunnel" },
      [CONTROLLER_TOKEN]: { user: "system:serviceaccount:istio-system:zt-controller", allow: (verb, resource, namespace) =>
          ["get", "list", "watch"].includes(verb) || (verb === "create" && resource === "tokenreviews") || (resource === "configmaps" && namespace === "istio-system" && (verb === "create" || verb === "update")),
      },
    },
  });
  const kubeconfig = path.join(dir, "kubeconfig");
  writeFileSync(kubeconfig, fakeKubeconfig(api.url, TOKEN, api.ca));
  const controllerKubeconfig = path.join(dir, "controller-kubeconfig");
  writeFileSync(controllerKubeconfig, fakeKubeconfig(api.url, CONTROLLER_TOKEN, api.ca));
  const forwarders: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    for (const f of forwarders) f.kill();
    await api.close();
  };
  try {
    for (const n of lab.nodes) {
      const f = lab.spawn(n.ns, [process.execPath, tool, "forward", "127.0.0.1", "6443", socketPath], { stdio: ["ignore", "pipe", "inherit"] });
      forwarders.push(f);
      const [line] = (await once(createInterface({ input: f.stdout! }), "line")) as [string];
      if (!line.includes("listening")) throw new Error(`the API forwarder in ${n.ns} did not start: ${line}`);
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const live = new Set<string>();
  const byName = new Map(pods.map((p) => [p.name, p]));
  const namespaces = new Set([...pods.map((p) => p.namespace), ...services.map((s) => s.namespace ?? "default")]);
  for (const ns of namespaces) api.store.apply("Namespace", { metadata: { name: ns, labels: { "istio.io/dataplane-mode": "ambient" } } });
  for (const s of services) {
    const namespace = s.namespace ?? "default";
    api.store.apply("Service", { metadata: { name: s.name, namespace }, spec: { clusterIP: s.vip, clusterIPs: [s.vip], selector: { [SVC_LABEL(s.name)]: "true" }, ports: [{ name: "tcp", port: s.port, targetPort: s.targetPort, protocol: "TCP" }] } });
  }
  const podObject = (p: KubePod): Record<string, unknown> => {
    const labels: Record<string, string> = { app: p.name.replace(/-\d+$/, "") };
    if (!p.enrolled) labels["istio.io/dataplane-mode"] = "none";
    for (const s of services) if (s.pods.includes(p.name)) labels[SVC_LABEL(s.name)] = "true";
    return {
      metadata: { name: p.name, namespace: p.namespace, labels },
      spec: { nodeName: p.node, serviceAccountName: p.serviceAccount, containers: [{ name: "app" }] },
      status: { phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: "Ready", status: "True" }] },
    };
  };
  /** The EndpointSlice controller: one slice per service, of the live pods it selects. */
  const syncSlices = (): void => {
    for (const s of services) {
      const namespace = s.namespace ?? "default";
      const endpoints = s.pods
        .filter((name) => live.has(name))
        .map((name) => byName.get(name)!)
        .map((p) => ({ addresses: [p.ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: "Pod", name: p.name, namespace: p.namespace }, nodeName: p.node }));
      api.store.apply("EndpointSlice", {
        metadata: { name: `${s.name}-1`, namespace, labels: { "kubernetes.io/service-name": s.name } },
        addressType: "IPv4",
        endpoints,
        ports: [{ name: "tcp", port: s.targetPort, protocol: "TCP" }],
      });
    }
  };
  const announce = (name: string): void => {
    const p = byName.get(name);
    if (!p) throw new Error(`cluster has no pod ${name}`);
    api.store.apply("Pod", podObject(p));
    live.add(name);
    syncSlices();
  };
  const withdraw = (name: string): void => {
    const p = byName.get(name);
    if (!p) throw new Error(`cluster has no pod ${name}`);
    api.store.remove("Pod", p.namespace, p.name);
    live.delete(name);
    syncSlices();
  };
  for (const p of pods) {
    if (!announced(p.name)) continue;
    api.store.apply("Pod", podObject(p));
    live.add(p.name);
  }
  syncSlices();
  for (const ap of policies) api.store.apply("AuthorizationPolicy", ap);
  // The DaemonSet's pods (istio-system is not in the mesh): what the CA checks a node agent's token against.
  api.store.apply("Namespace", { metadata: { name: "istio-system" } });
  for (const n of lab.nodes) {
    api.store.apply("Pod", {
      metadata: { name: `ztunnel-${n.name}`, namespace: "istio-system", labels: { app: "ztunnel" } },
      spec: { nodeName: n.name, serviceAccountName: "ztunnel", hostNetwork: true, containers: [{ name: "istio-proxy" }] },
      status: { phase: "Running", podIP: n.uplinkIp, podIPs: [{ ip: n.uplinkIp }], conditions: [{ type: "Ready", status: "True" }] },
    });
  }
  const agentToken = (node: string, spec: { audiences?: string[]; expiresAt?: Date; serviceAccount?: string } = {}): string => {
    const pod = api.store.get(RESOURCE_PODS, "istio-system", `ztunnel-${node}`);
    if (!pod) throw new Error(`no ztunnel pod for node ${node}`);
    return api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: spec.serviceAccount ?? "ztunnel", pod: { name: pod.metadata.name, uid: pod.metadata.uid! }, ...(spec.audiences ? { audiences: spec.audiences } : {}), ...(spec.expiresAt ? { expiresAt: spec.expiresAt } : {}) });
  };
  const configMaps = RESOURCES.find((r) => r.kind === "ConfigMap")!;
  const publishedRoot = (): string | undefined => (api.store.get(configMaps, "istio-system", "istio-ca-root-cert")?.["data"] as Record<string, string> | undefined)?.["root-cert.pem"];
  return { api, env: { DISCOVERY: "kubernetes", KUBECONFIG: kubeconfig }, controllerKubeconfig, agentToken, publishedRoot, announce, withdraw, stop };
}
