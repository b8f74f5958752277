import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startCluster, type AgentProcess, type Cluster } from "@zt/harness";
import { counter, until } from "./metrics.js";

/**
 * The capture paths of capture-cluster.test.ts with the mesh from the FAKE API server's
 * objects, in two modes: "kubernetes", each agent following the API itself
 * (DISCOVERY=kubernetes, a kubeconfig and a token), and "controller", zt-controller
 * following it and the agents taking the mesh over delta xDS and their certificates from
 * its CA (no root key, no kubeconfig on the nodes). Needs root.
 */
export function captureWithApiSuite(discovery: "kubernetes" | "controller"): () => Cluster {
  const VIP = "198.18.128.40";
  let c: Cluster;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error("capture tests need root (CI runs as root): run `sudo npm test`");
    c = await startCluster({
      discovery,
      nodes: [
        { name: "node-a", pods: [{ name: "sleep-a", serviceAccount: "sleep" }, { name: "echo-a", serviceAccount: "echo" }, { name: "plain-a", enrolled: false }] },
        { name: "node-b", pods: [{ name: "echo-b", serviceAccount: "echo" }, { name: "legacy-b", enrolled: false, namespace: "legacy" }, { name: "late-b", serviceAccount: "late", announced: false }] },
      ],
      services: [{ name: "echo", vip: VIP, port: 80, targetPort: 8080, pods: ["echo-b"] }],
      authorizationPolicies: [{ metadata: { name: "deny-9999", namespace: "default" }, spec: { action: "DENY", rules: [{ to: [{ operation: { ports: ["9999"] } }] }] } }],
      echoPorts: [8080, 9999],
    });
  }, 90_000);

  afterAll(async () => {
    await c?.stop();
  }, 30_000);

  const ip = (pod: string): string => c.pod(pod).ip;
  /** The newest line for a flow from `srcAddr`, logged at or after `since` (a source port comes back in a file of many flows). */
  const logFor = (a: AgentProcess, direction: string, srcAddr: string, since = 0): Promise<Record<string, unknown>> =>
    until(`${a.node} ${direction} access log for ${srcAddr}`, () => a.accessLogs().findLast((l) => l["direction"] === direction && l["src.addr"] === srcAddr && Date.parse(String(l["time"])) >= since), (l) => l !== undefined) as Promise<Record<string, unknown>>;
  const dump = async (node: string): Promise<{ source: { kind: string; synced: boolean }; capture: { pods: string[] } }> => JSON.parse((await c.agent(node).get("admin", "/config_dump")).body);

  describe(`capture with the mesh from the Kubernetes API (${discovery})`, () => {
    test(discovery === "kubernetes" ? "the agents follow the API server through their kubeconfig" : "the agents follow zt-controller over delta xDS, with certificates from its CA", async () => {
      for (const node of ["node-a", "node-b"]) {
        if (discovery === "kubernetes") expect((await dump(node)).source).toMatchObject({ kind: "kubernetes", synced: true });
        else expect((await dump(node)).source).toMatchObject({ kind: "xds" });
      }
      expect((await dump("node-b")).capture.pods.sort()).toEqual([ip("echo-b")]);
    });

    test("pod -> Service VIP: its EndpointSlice's pod on another node, over HBONE, source kept", async () => {
      const r = await c.flow("sleep-a", VIP, 80);
      expect(r).toMatchObject({ ok: true, detail: "intact" });
      expect(r.seenByDestination?.split(":")[0]).toBe(ip("sleep-a"));
      expect(await logFor(c.agent("node-a"), "outbound", r.client)).toMatchObject({ "dst.service": "echo.default.svc.cluster.local", "dst.workload": "echo-b", "dst.hbone_addr": `${ip("echo-b")}:15008` });
      expect(await logFor(c.agent("node-b"), "inbound", r.client)).toMatchObject({ "src.identity": c.pod("sleep-a").identity, "dst.workload": "echo-b" });
    });

    test("same node through the agent's own inbound, and the AuthorizationPolicy object denies its port", async () => {
      const a = c.agent("node-a");
      const r = await c.flow("sleep-a", ip("echo-a"), 8080);
      expect(r).toMatchObject({ ok: true, detail: "intact" });
      expect(await logFor(a, "inbound", r.client)).toMatchObject({ "src.identity": c.pod("sleep-a").identity, "dst.workload": "echo-a" });
      expect(counter((await a.get("stats", "/metrics")).body, "istio_tcp_connections_opened_total", { reporter: "destination", destination_workload: "echo-a" })).toBeGreaterThanOrEqual(1);
      const denied = await c.flow("sleep-a", ip("echo-a"), 9999);
      expect(denied.ok).toBe(false);
      await until("AUTHZ_DENIED by deny-9999", () => a.accessLogs().some((l) => String(l["error"] ?? "").startsWith("AUTHZ_DENIED:") && l["dst.workload"] === "echo-a"), (v) => v);
    });

    test("outside the mesh: a mesh pod reaches it in plain TCP; it reaches a mesh pod on 15006, source kept", async () => {
      const out = await c.flow("sleep-a", ip("legacy-b"), 8080);
      expect(out).toMatchObject({ ok: true, detail: "intact" });
      expect((await logFor(c.agent("node-a"), "outbound", out.client))["dst.hbone_addr"]).toBeUndefined();
      const back = await c.flow("legacy-b", ip("echo-a"), 8080);
      expect(back).toMatchObject({ ok: true, detail: "intact" });
      expect(back.seenByDestination?.split(":")[0]).toBe(ip("legacy-b"));
      expect((await logFor(c.agent("node-a"), "inbound", back.client))["src.identity"]).toBeUndefined();
    });

    // Cases from Istio's AuthorizationPolicy reference, each through real connections to echo-b:
    // from sleep-a (spiffe://cluster.local/ns/default/sa/sleep), echo-a (…/sa/echo) and legacy-b (no identity).
    const cases: { name: string; spec: Record<string, unknown>; annotations?: Record<string, string>; allowed: Record<string, boolean> }[] = [
      { name: "allow-sleep", spec: { action: "ALLOW", rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }] }] }, allowed: { "sleep-a": true, "echo-a": false, "legacy-b": false } },
      { name: "deny-other-ns", spec: { action: "DENY", rules: [{ from: [{ source: { notNamespaces: ["default"] } }] }] }, allowed: { "sleep-a": true, "echo-a": true, "legacy-b": false } },
      { name: "allow-get-only", spec: { action: "ALLOW", rules: [{ to: [{ operation: { methods: ["GET"] } }] }] }, allowed: { "sleep-a": false, "echo-a": false, "legacy-b": false } },
      { name: "deny-sleep-ip", spec: { action: "DENY", rules: [{ when: [{ key: "source.ip", values: ["SLEEP_IP/32"] }] }] }, allowed: { "sleep-a": false, "echo-a": true, "legacy-b": true } },
      { name: "allow-ns-prefix", spec: { action: "ALLOW", rules: [{ from: [{ source: { namespaces: ["def*"] } }] }] }, allowed: { "sleep-a": true, "echo-a": true, "legacy-b": false } },
      { name: "allow-sa-bare", spec: { action: "ALLOW", rules: [{ from: [{ source: { serviceAccounts: ["echo"] } }] }] }, allowed: { "sleep-a": false, "echo-a": true, "legacy-b": false } },
      { name: "deny-ipblocks", spec: { action: "DENY", rules: [{ from: [{ source: { ipBlocks: ["SLEEP_IP/24"], notIpBlocks: ["ECHO_A_IP"] } }] }] }, allowed: { "sleep-a": false, "echo-a": true, "legacy-b": true } },
      { name: "deny-port", spec: { action: "DENY", rules: [{ to: [{ operation: { ports: ["8080"] } }] }] }, allowed: { "sleep-a": false, "echo-a": false, "legacy-b": false } },
      { name: "allow-nothing", spec: { action: "ALLOW" }, allowed: { "sleep-a": false, "echo-a": false, "legacy-b": false } },
      { name: "deny-all", spec: { action: "DENY", rules: [{}] }, allowed: { "sleep-a": false, "echo-a": false, "legacy-b": false } },
      { name: "dry-run-deny", annotations: { "istio.io/dry-run": "true" }, spec: { action: "DENY", rules: [{}] }, allowed: { "sleep-a": true, "echo-a": true, "legacy-b": true } },
      { name: "waypoint-only", spec: { targetRefs: [{ kind: "Service", group: "", name: "echo" }], action: "DENY", rules: [{}] }, allowed: { "sleep-a": true, "echo-a": true, "legacy-b": true } },
      { name: "selector-match", spec: { selector: { matchLabels: { app: "echo-b" } }, action: "DENY", rules: [{}] }, allowed: { "sleep-a": false, "echo-a": false, "legacy-b": false } },
      { name: "selector-miss", spec: { selector: { matchLabels: { app: "other" } }, action: "DENY", rules: [{}] }, allowed: { "sleep-a": true, "echo-a": true, "legacy-b": true } },
    ];
    for (const k of cases) {
      test(`AuthorizationPolicy ${k.name}: ${Object.entries(k.allowed).map(([f, ok]) => `${f} ${ok ? "allowed" : "denied"}`).join(", ")}`, async () => {
        const spec = JSON.parse(JSON.stringify(k.spec).replaceAll("SLEEP_IP", ip("sleep-a")).replaceAll("ECHO_A_IP", ip("echo-a"))) as Record<string, unknown>;
        c.kube!.api.store.apply("AuthorizationPolicy", { metadata: { name: k.name, namespace: "default", annotations: k.annotations ?? {} }, spec });
        // Policies ztunnel skips never show on the node: wait for the rebuild that saw this one instead.
        const skipped = k.name === "waypoint-only";
        const policies = async (): Promise<string[]> => (JSON.parse((await c.agent("node-b").get("admin", "/config_dump")).body) as { policies: { name: string }[] }).policies.map((p) => p.name);
        /** Names node-b has: its policies, and the objects it reported and skipped. */
        const seen = async (): Promise<string[]> => {
          const d = JSON.parse((await c.agent("node-b").get("admin", "/config_dump")).body) as { policies: { name: string }[]; source: { problems?: { name: string }[] } };
          // Through the controller, what it skipped is in its own status, not the agent's.
          const problems = discovery === "kubernetes" ? (d.source.problems ?? []) : (JSON.parse((await c.controller!.get("/debug/status")).body) as { source: { problems: { name: string }[] } }).source.problems;
          return [...d.policies.map((p) => p.name), ...problems.map((p) => p.name)];
        };
        try {
          if (skipped) await until(`${k.name} reported on node-b`, seen, (names) => names.includes(k.name), 10_000);
          else await until(`${k.name} on node-b`, policies, (ps) => ps.includes(k.name), 10_000);
          const got: Record<string, boolean> = {};
          const clients: Record<string, string> = {};
          for (const from of Object.keys(k.allowed)) {
            const r = await c.flow(from, ip("echo-b"), 8080);
            got[from] = r.ok;
            clients[from] = r.client;
          }
          expect(got).toEqual(k.allowed);
          // Explain, asked at each source's node, says the same of every one of these connections.
          const explained: Record<string, boolean> = {};
          for (const from of Object.keys(k.allowed)) {
            const r = await c.agent(c.pod(from).node).get("admin", `/debug/explain?src=${ip(from)}&dst=${ip("echo-b")}:8080`);
            explained[from] = (JSON.parse(r.body) as { verdict: string }).verdict === "allow";
          }
          expect(explained).toEqual(k.allowed);
          if (k.annotations?.["istio.io/dry-run"] === "true") {
            // Allowed, and the line and the metric say what enforcing it would have done.
            const b = c.agent("node-b");
            expect(await logFor(b, "inbound", clients["sleep-a"]!)).toMatchObject({ "authz.dry_run": `default/${k.name}`, "authz.dry_run_decision": "deny" });
            expect(counter((await b.get("stats", "/metrics")).body, "ztunnel_authz_dry_run_total", { policies: `default/${k.name}`, decision: "deny" })).toBeGreaterThanOrEqual(3);
          }
        } finally {
          c.kube!.api.store.remove("AuthorizationPolicy", "default", k.name);
          await until(`${k.name} gone`, seen, (names) => !names.includes(k.name), 10_000);
        }
      }, 30_000);
    }

    test("a pod added to the API is captured and reached over HBONE; deleted, it leaves the node's captured set", async () => {
      const t0 = Date.now() - 5;
      const before = await c.flow("sleep-a", ip("late-b"), 8080);
      expect(before).toMatchObject({ ok: true, detail: "intact" });
      expect((await logFor(c.agent("node-a"), "outbound", before.client, t0))["dst.hbone_addr"]).toBeUndefined();
      c.kube!.announce("late-b");
      await until("late-b in node-b's set", () => dump("node-b"), (d) => d.capture.pods.includes(ip("late-b")), 10_000);
      await until("node-a knows late-b", () => c.agent("node-a").get("admin", "/config_dump"), (r) => r.body.includes(`"${ip("late-b")}"`), 10_000);
      const t1 = Date.now() - 5;
      const after = await c.flow("sleep-a", ip("late-b"), 8080);
      expect(after).toMatchObject({ ok: true, detail: "intact" });
      expect(await logFor(c.agent("node-b"), "inbound", after.client, t1)).toMatchObject({ "src.identity": c.pod("sleep-a").identity, "dst.workload": "late-b", "dst.identity": c.pod("late-b").identity });
      c.kube!.withdraw("late-b");
      await until("late-b out of node-b's set", () => dump("node-b"), (d) => !d.capture.pods.includes(ip("late-b")), 10_000);
      const set = (await c.lab.exec(c.lab.node("node-b").ns, ["ipset", "list", "ztunnel-pods-ips"])).stdout;
      expect(set).not.toContain(ip("late-b"));
      expect(set).toContain(ip("echo-b"));
    });
  });
  return () => c;
}
