import { afterEach, describe, expect, test } from "vitest";
import { fakeKubeconfig, startFakeKubeApi, type FakeKubeApi } from "@zt/harness";
import { KubeConfig, startKubeDiscovery, type KubeDiscovery } from "@zt/kube";
import { createMeshStore, type MeshDelta, type MeshSnapshot } from "@zt/state";
import { until } from "./support/metrics.js";

// Discovery's batching against the FAKE API server: a burst of changes is a few updates,
// not one per event, and the last one has everything.
const TOKEN = "t";
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setup(): Promise<{ api: FakeKubeApi; snapshots: MeshSnapshot[]; d: KubeDiscovery; deltas: MeshDelta[] }> {
  const api = await startFakeKubeApi({ tokens: { [TOKEN]: { user: "system:serviceaccount:istio-system:ztunnel" } } });
  cleanup.push(() => api.close());
  api.store.apply("Namespace", { metadata: { name: "default", labels: { "istio.io/dataplane-mode": "ambient" } } });
  const kc = new KubeConfig();
  kc.loadFromString(fakeKubeconfig(api.url, TOKEN, api.ca));
  // The agent's way: the first update replaces the store, the next ones are deltas applied to it.
  const store = createMeshStore();
  const snapshots: MeshSnapshot[] = [];
  const deltas: MeshDelta[] = [];
  const d = startKubeDiscovery({
    kc,
    names: { clusterId: "Kubernetes", trustDomain: "cluster.local", domainSuffix: "cluster.local", rootNamespace: "istio-system" },
    onUpdate: ({ full, delta }) => {
      if (full) store.replace({ workloads: delta.workloads ?? [], services: delta.services ?? [], policies: delta.policies ?? [] });
      else store.apply(delta);
      deltas.push(delta);
      snapshots.push(store.snapshot());
    },
    batchMs: 100,
  });
  cleanup.push(() => d.close());
  return { api, snapshots, d, deltas };
}

const pod = (i: number): Record<string, unknown> => ({
  metadata: { name: `p${i}`, namespace: "default" },
  spec: { nodeName: `node-${i % 10}` },
  status: { phase: "Running", podIP: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, conditions: [{ type: "Ready", status: "True" }] },
});

describe("discovery's snapshots", () => {
  test("the first one comes after every resource's first list; a burst of 1,000 pod changes is a few updates with all of them", async () => {
    const { api, snapshots, d } = await setup();
    await until("the first snapshot", () => snapshots.length, (n) => n === 1, 15_000);
    expect(d.synced()).toBe(true);
    expect(snapshots[0]!.workloads).toEqual([]);
    const before = d.stats().updates;
    for (let i = 1; i <= 1000; i++) api.store.apply("Pod", pod(i));
    await until("all 1,000 pods", () => snapshots.at(-1)!.workloads.length, (n) => n === 1000, 15_000);
    const updates = d.stats().updates - before;
    // One per 100 ms window while the events arrive: far fewer than the events.
    expect(updates).toBeGreaterThanOrEqual(1);
    expect(updates).toBeLessThan(50);
    expect(d.stats().objects).toMatchObject({ pods: 1000, namespaces: 1 });
  });

  test("a lost watch keeps the last good state while it reconnects, and then catches up", async () => {
    const { api, snapshots } = await setup();
    api.store.apply("Pod", pod(1));
    await until("pod 1", () => snapshots.at(-1)?.workloads.length, (n) => n === 1, 15_000);
    api.latencyMs = 300;
    api.dropConnections();
    const during = snapshots.length;
    api.store.apply("Pod", pod(2));
    await new Promise((r) => setTimeout(r, 100));
    // Nothing was taken away meanwhile.
    expect(snapshots.slice(during).every((s) => s.workloads.length >= 1)).toBe(true);
    api.latencyMs = 0;
    await until("pod 2 too", () => snapshots.at(-1)?.workloads.length, (n) => n === 2, 15_000);
  });

  test("410 Gone, then a relist: what was deleted meanwhile goes, what was added comes, and only those are in the delta", async () => {
    const { api, snapshots, d, deltas } = await setup();
    for (const i of [1, 2, 3]) api.store.apply("Pod", pod(i));
    await until("3 pods", () => snapshots.at(-1)?.workloads.length, (n) => n === 3, 15_000);
    const relists = (): number => d.status().find((s) => s.resource === "pods")!.relists;
    api.latencyMs = 200;
    api.dropConnections();
    api.store.remove("Pod", "default", "p2");
    api.store.apply("Pod", pod(4));
    api.store.compact();
    api.latencyMs = 0;
    await until("relisted", () => relists(), (n) => n === 1, 15_000);
    await until("p2 gone, p4 there", () => snapshots.at(-1)!.workloads.map((w) => w.name).sort(), (names) => names.join() === "p1,p3,p4", 15_000);
    const after = deltas.slice(deltas.findIndex((x) => (x.removedWorkloads ?? []).length > 0));
    // The pods the relist gave back unchanged are not translated again.
    expect(after.flatMap((x) => x.workloads ?? []).map((w) => w.name)).toEqual(["p4"]);
    expect(after.flatMap((x) => x.removedWorkloads ?? [])).toEqual(["Kubernetes//Pod/default/p2"]);
  });
});
