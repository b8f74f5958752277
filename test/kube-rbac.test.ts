import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fakeKubeconfig, httpGet, startFakeKubeApi, startLoopbackMesh, type FakeKubeApi, type LoopbackMesh } from "@zt/harness";
import { workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// An agent whose service account may not list pods (a ClusterRole missing a rule): it is not
// ready, and says which resource and verb were refused, and by whom, in readiness and in the log.
const NET = 78;
const TOKEN = "limited-token";
let api: FakeKubeApi;
let mesh: LoopbackMesh;

beforeAll(async () => {
  api = await startFakeKubeApi({ tokens: { [TOKEN]: { user: "system:serviceaccount:istio-system:ztunnel", allow: (verb, resource) => !(resource === "pods" && verb === "list") } } });
  const kubeconfig = workloadDir().write("kubeconfig", fakeKubeconfig(api.url, TOKEN, api.ca));
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a"], env: { DISCOVERY: "kubernetes", KUBECONFIG: kubeconfig }, waitFor: "answering" });
}, 60_000);
afterAll(async () => {
  await mesh?.stop();
  await api?.close();
});

describe("RBAC the agent lacks", () => {
  test("403 on listing pods: not ready, naming the resource, the verb and the user; the other resources sync", async () => {
    const forbidden = 'list pods: 403 Forbidden: pods is forbidden: User "system:serviceaccount:istio-system:ztunnel" cannot list resource "pods" in API group "" at the cluster scope';
    const r = await until("readiness naming the refusal", () => httpGet(`${mesh.host(0)}:15021`, "/healthz/ready"), (x) => x.body.includes(forbidden));
    expect(r.status).toBe(503);
    expect(r.body).toContain("Kubernetes pods: first list not done (KUBE_FORBIDDEN:");
    expect(r.body).not.toContain("Kubernetes services");
    const line = mesh.agents[0]!.logs.find((l) => l["code"] === "KUBE_FORBIDDEN");
    expect(line).toMatchObject({ level: "error", resource: "pods" });
    expect(String(line!["msg"])).toContain("check the ClusterRole bound to this agent's service account");
  });
});
