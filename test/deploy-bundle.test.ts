import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { parseAllDocuments } from "yaml";
import { Namespace, ServiceAccount } from "kubernetes-models/v1";
import { DaemonSet } from "kubernetes-models/apps/v1";
import { ClusterRole, ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1";
import { createCertManager, loadOrCreateCa } from "@zt/identity";
import { envHelp } from "@zt/ztunnel";

// The deploy bundle as users apply it: rendered by kubectl's kustomize, every object
// validated against the Kubernetes schemas (kubernetes-models), and the facts the agent
// depends on checked; its scripts checked with bash -n and shellcheck.
const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<string, any>;
const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "apps/v1/DaemonSet": DaemonSet,
  "rbac.authorization.k8s.io/v1/ClusterRole": ClusterRole,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": ClusterRoleBinding,
  "apiextensions.k8s.io/v1/CustomResourceDefinition": CustomResourceDefinition,
};

/**
 * Fields the Kubernetes schemas do not have (a typo: `imagePullPolcy`), which kubectl's strict
 * field validation refuses and the models' validate() lets through: checked by TypeScript,
 * whose object literals admit no property their type (generated from the same OpenAPI
 * schemas) lacks. The compiler's complaints, or "" when there are none.
 */
async function unknownFields(objs: readonly Obj[]): Promise<string> {
  const dir = mkdtempSync(path.join(root, "test", ".strict-"));
  dirs.push(dir);
  const types: Record<string, string> = {
    "v1/Namespace": "v1/Namespace INamespace",
    "v1/ServiceAccount": "v1/ServiceAccount IServiceAccount",
    "apps/v1/DaemonSet": "apps/v1/DaemonSet IDaemonSet",
    "rbac.authorization.k8s.io/v1/ClusterRole": "rbac.authorization.k8s.io/v1/ClusterRole IClusterRole",
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "rbac.authorization.k8s.io/v1/ClusterRoleBinding IClusterRoleBinding",
    "apiextensions.k8s.io/v1/CustomResourceDefinition": "apiextensions.k8s.io/v1/CustomResourceDefinition ICustomResourceDefinition",
  };
  const source = objs
    .map((o, i) => {
      const [mod, type] = types[`${o.apiVersion}/${o.kind}`]!.split(" ");
      return `import type { ${type} as T${i} } from "kubernetes-models/${mod}";\nexport const o${i}: T${i} = ${JSON.stringify(o, null, 1)};\n`;
    })
    .join("");
  writeFileSync(path.join(dir, "objects.ts"), source);
  const compilerOptions = { noEmit: true, strict: true, skipLibCheck: true, target: "es2022", module: "nodenext", moduleResolution: "nodenext", types: [] };
  writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["objects.ts"] }));
  try {
    await run(path.join(root, "node_modules", ".bin", "tsc"), ["-p", dir], { cwd: root });
    return "";
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err);
  }
}

async function render(dir: string): Promise<Obj[]> {
  const { stdout } = await run("kubectl", ["kustomize", path.join(root, dir)]);
  return parseAllDocuments(stdout).map((d) => d.toJS() as Obj);
}

describe("the deploy bundle", () => {
  test("kubectl kustomize deploy/ renders valid objects: namespace, service account, read-only RBAC, the DaemonSet", async () => {
    const objs = await render("deploy");
    expect(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(["ClusterRole/ztunnel-discovery", "ClusterRoleBinding/ztunnel-discovery", "DaemonSet/ztunnel", "Namespace/istio-system", "ServiceAccount/ztunnel"]);
    for (const o of objs) {
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model!(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
    }
    expect(await unknownFields(objs)).toBe("");
    // The check sees a typo, however deep.
    const typo = structuredClone(objs.find((o) => o.kind === "DaemonSet")!);
    typo["spec"].template.spec.containers[0].imagePullPolcy = "Never";
    expect(await unknownFields([typo])).toMatch(/imagePullPolcy/);
    const role = objs.find((o) => o.kind === "ClusterRole")!;
    const granted = role["rules"].flatMap((r: { apiGroups: string[]; resources: string[]; verbs: string[] }) => r.resources.map((res) => `${r.apiGroups.join(",")}/${res}: ${[...r.verbs].sort().join(",")}`));
    expect(granted.sort()).toEqual(["/namespaces: get,list,watch", "/pods: get,list,watch", "/services: get,list,watch", "discovery.k8s.io/endpointslices: get,list,watch", "security.istio.io/authorizationpolicies: get,list,watch"]);
    const binding = objs.find((o) => o.kind === "ClusterRoleBinding")!;
    expect(binding["roleRef"]).toMatchObject({ kind: "ClusterRole", name: "ztunnel-discovery" });
    expect(binding["subjects"]).toEqual([{ kind: "ServiceAccount", name: "ztunnel", namespace: "istio-system" }]);
  });

  test("the DaemonSet is shaped like Istio's ztunnel: host network, node-critical, every taint, never a node without an agent, least privilege", async () => {
    const ds = (await render("deploy")).find((o) => o.kind === "DaemonSet")!;
    const spec = ds["spec"];
    const pod = spec.template.spec;
    const agent = pod.containers.find((c: { name: string }) => c.name === "ztunnel");
    expect(spec.updateStrategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    expect(pod).toMatchObject({ hostNetwork: true, priorityClassName: "system-node-critical", serviceAccountName: "ztunnel", tolerations: [{ operator: "Exists" }] });
    expect(agent.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"], add: ["NET_ADMIN", "NET_RAW"] } });
    const env = Object.fromEntries(agent.env.map((e: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({ NODE_NAME: "spec.nodeName", POD_NAME: "metadata.name", POD_NAMESPACE: "metadata.namespace", INSTANCE_IP: "status.podIP", DISCOVERY: "kubernetes", REDIRECT_MODE: "tproxy" });
    // Every other variable is one the agent reads (a typo would be ignored silently).
    const known = new Set(envHelp().map((v) => v.env));
    expect(Object.keys(env).filter((k) => !known.has(k) && !["POD_NAME", "POD_NAMESPACE", "INSTANCE_IP"].includes(k))).toEqual([]);
    expect(agent.readinessProbe.httpGet).toEqual({ path: "/healthz/ready", port: 15021 });
    expect(agent.startupProbe.exec.command.join(" ")).toContain(env["STARTED_FILE"]);
    expect(spec.template.metadata.annotations).toMatchObject({ "prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus" });
    expect(agent.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    const mounts = Object.fromEntries(agent.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
    const volumes = Object.fromEntries(pod.volumes.map((v: Record<string, any>) => [v["name"], v]));
    expect(mounts).toMatchObject({ "xtables-lock": "/run/xtables.lock", cacerts: env["CA_CERTS_DIR"], handover: env["HANDOVER_DIR"], tmp: "/tmp" });
    expect(volumes["xtables-lock"].hostPath).toEqual({ path: "/run/xtables.lock", type: "FileOrCreate" });
    expect(volumes["cacerts"].secret).toEqual({ secretName: "cacerts" });
  });

  test("the first upgrade onto the handover (deploy/README.md) renders the old strategy and nothing else", async () => {
    const { stdout } = await run("sh", ["-c", `kubectl kustomize ${path.join(root, "deploy")} | sed -e 's/maxSurge: 1$/maxSurge: 0/' -e 's/maxUnavailable: 0$/maxUnavailable: 1/'`]);
    const objs = parseAllDocuments(stdout).map((d) => d.toJS() as Obj);
    const plain = await render("deploy");
    const ds = objs.find((o) => o.kind === "DaemonSet")!;
    expect(ds["spec"].updateStrategy.rollingUpdate).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    ds["spec"].updateStrategy.rollingUpdate = { maxSurge: 1, maxUnavailable: 0 };
    expect(objs).toEqual(plain);
  });

  test("the kind overlay adds the AuthorizationPolicy resource and never pulls the image", async () => {
    const objs = await render("deploy/overlays/kind");
    for (const o of objs) expect(() => new MODELS[`${o.apiVersion}/${o.kind}`]!(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
    expect(await unknownFields(objs)).toBe("");
    expect(objs.find((o) => o.kind === "CustomResourceDefinition")?.metadata.name).toBe("authorizationpolicies.security.istio.io");
    const pod = objs.find((o) => o.kind === "DaemonSet")!["spec"].template.spec;
    expect([...pod.initContainers, ...pod.containers].map((c: { imagePullPolicy: string; image: string }) => `${c.image} ${c.imagePullPolicy}`)).toEqual(["ztunnel-ts:dev Never", "ztunnel-ts:dev Never"]);
  });

  test("create-cacerts.sh writes a CA in Istio's cacerts layout that the agent's CA loads and signs with", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "zt-cacerts-"));
    dirs.push(dir);
    const { stdout } = await run("bash", [path.join(root, "deploy/create-cacerts.sh"), "--out", dir]);
    expect(stdout).toMatch(/wrote ca-cert\.pem, ca-key\.pem, root-cert\.pem, cert-chain\.pem/);
    const ca = await loadOrCreateCa({ dir, trustDomain: "cluster.local" });
    const certs = createCertManager({ source: ca, ttlMs: 3_600_000 });
    try {
      const cert = await certs.fetch("spiffe://cluster.local/ns/default/sa/sleep");
      expect(cert.identity).toBe("spiffe://cluster.local/ns/default/sa/sleep");
      expect(cert.roots).toHaveLength(1);
    } finally {
      certs.close();
    }
  });

  test("the scripts parse (bash -n) and pass shellcheck", async () => {
    const scripts = ["scripts/kind-e2e.sh", "deploy/create-cacerts.sh", "scripts/setup.sh"].map((s) => path.join(root, s));
    for (const s of scripts) await run("bash", ["-n", s]);
    await expect(run("shellcheck", scripts)).resolves.toMatchObject({ stdout: "" });
  });
});
