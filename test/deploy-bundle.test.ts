import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { parseAllDocuments } from "yaml";
import { Namespace, Service, ServiceAccount } from "kubernetes-models/v1";
import { DaemonSet, Deployment } from "kubernetes-models/apps/v1";
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1";
import { createCertManager, loadOrCreateCa } from "@zt/identity";
import { envHelp, loadConfig } from "@zt/ztunnel";

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
  "v1/Service": Service,
  "apps/v1/DaemonSet": DaemonSet,
  "apps/v1/Deployment": Deployment,
  "rbac.authorization.k8s.io/v1/ClusterRole": ClusterRole,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": ClusterRoleBinding,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
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
    "v1/Service": "v1/Service IService",
    "apps/v1/DaemonSet": "apps/v1/DaemonSet IDaemonSet",
    "apps/v1/Deployment": "apps/v1/Deployment IDeployment",
    "rbac.authorization.k8s.io/v1/ClusterRole": "rbac.authorization.k8s.io/v1/ClusterRole IClusterRole",
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "rbac.authorization.k8s.io/v1/ClusterRoleBinding IClusterRoleBinding",
    "rbac.authorization.k8s.io/v1/Role": "rbac.authorization.k8s.io/v1/Role IRole",
    "rbac.authorization.k8s.io/v1/RoleBinding": "rbac.authorization.k8s.io/v1/RoleBinding IRoleBinding",
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

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
/** A role's rules as "group/resource: verbs" lines, sorted. */
function grants(role: Obj): string[] {
  return role["rules"].flatMap((r: Rule) => r.resources.map((res) => `${r.apiGroups.join(",")}/${res}: ${[...r.verbs].sort().join(",")}`)).sort();
}
type Container = { name: string; image: string; imagePullPolicy: string; env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[]; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[] } & Record<string, any>;
function envOf(c: Container): Record<string, string | undefined> {
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
}
/** Every pod template of a render, by "Kind/name". */
function podSpecs(objs: readonly Obj[]): Record<string, Record<string, any>> {
  return Object.fromEntries(objs.filter((o) => o["spec"]?.template?.spec).map((o) => [`${o.kind}/${o.metadata.name}`, o["spec"].template.spec]));
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
    expect(grants(role)).toEqual(["/namespaces: get,list,watch", "/pods: get,list,watch", "/services: get,list,watch", "discovery.k8s.io/endpointslices: get,list,watch", "security.istio.io/authorizationpolicies: get,list,watch"]);
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

  describe("the controller bundle (deploy/controller)", () => {
    const agentsAddr = "zt-controller.istio-system.svc:15012";

    test("renders valid objects: the base's agent and namespace, the controller's Deployment, Service, service account and RBAC; no agent RBAC", async () => {
      const objs = await render("deploy/controller");
      expect(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
        "ClusterRole/zt-controller",
        "ClusterRoleBinding/zt-controller",
        "DaemonSet/ztunnel",
        "Deployment/zt-controller",
        "Namespace/istio-system",
        "Role/zt-controller",
        "RoleBinding/zt-controller",
        "Service/zt-controller",
        "ServiceAccount/zt-controller",
        "ServiceAccount/ztunnel",
      ]);
      for (const o of objs) {
        const Model = MODELS[`${o.apiVersion}/${o.kind}`];
        expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
        expect(() => new Model!(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      }
      expect(await unknownFields(objs)).toBe("");
      // Nothing is bound to the agent's service account: it reads nothing from the API server.
      const bindings = objs.filter((o) => o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding");
      expect(bindings.flatMap((b) => b["subjects"])).toEqual(bindings.map(() => ({ kind: "ServiceAccount", name: "zt-controller", namespace: "istio-system" })));
    });

    test("the agent asks the controller for certificates and the mesh, with a projected istio-ca token, and holds neither the CA key nor an API token", async () => {
      const objs = await render("deploy/controller");
      const pod = podSpecs(objs)["DaemonSet/ztunnel"]!;
      const agent = pod["containers"].find((c: Container) => c.name === "ztunnel") as Container;
      expect(pod["automountServiceAccountToken"]).toBe(false);
      expect(pod["serviceAccountName"]).toBe("ztunnel");
      const env = envOf(agent);
      expect(env).toMatchObject({ CA_ADDRESS: agentsAddr, XDS_ADDRESS: agentsAddr, NODE_NAME: "spec.nodeName", POD_NAME: "metadata.name", POD_NAMESPACE: "metadata.namespace", INSTANCE_IP: "status.podIP", REDIRECT_MODE: "tproxy" });
      expect(Object.keys(env)).not.toContain("CA_CERTS_DIR");
      expect(Object.keys(env)).not.toContain("DISCOVERY");
      const known = new Set(envHelp().map((v) => v.env));
      expect(Object.keys(env).filter((k) => !known.has(k) && !["POD_NAME", "POD_NAMESPACE", "INSTANCE_IP"].includes(k))).toEqual([]);
      // Where the agent reads the root and the token by default (CA_ROOT_CA, XDS_ROOT_CA, AUTH_TOKEN: next test).
      const mounts = Object.fromEntries((agent.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
      const volumes = Object.fromEntries(pod["volumes"].map((v: Record<string, any>) => [v["name"], v]));
      expect(mounts).toMatchObject({ "istio-ca-root-cert": "/var/run/secrets/istio", "istio-token": "/var/run/secrets/tokens", tmp: "/tmp" });
      expect(volumes["istio-ca-root-cert"].configMap).toEqual({ name: "istio-ca-root-cert" });
      expect(volumes["istio-token"].projected).toEqual({ sources: [{ serviceAccountToken: { audience: "istio-ca", expirationSeconds: 43200, path: "istio-token" } }] });
      expect(Object.keys(volumes)).not.toContain("cacerts");
      expect(Object.values(volumes).filter((v) => v["secret"])).toEqual([]);
      expect(Object.keys(mounts)).not.toContain("cacerts");
      // The rest of the agent is the base's.
      const base = podSpecs(await render("deploy"))["DaemonSet/ztunnel"]!;
      expect(pod["hostNetwork"]).toBe(true);
      expect(agent["securityContext"]).toEqual(base["containers"][0].securityContext);
      expect(agent["readinessProbe"]).toEqual(base["containers"][0].readinessProbe);
      expect(pod["initContainers"]).toEqual(base["initContainers"]);
    });

    test("the agent's config takes the DaemonSet's environment: xDS and the CA at the controller, the root and the token where they are mounted", async () => {
      const pod = podSpecs(await render("deploy/controller"))["DaemonSet/ztunnel"]!;
      const mounts = Object.fromEntries(pod["containers"][0].volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
      const token = pod["volumes"].find((v: { name: string }) => v.name === "istio-token").projected.sources[0].serviceAccountToken;
      // The controller publishes the root under the key root-cert.pem; the token is the projection's path.
      expect([`${mounts["istio-ca-root-cert"]}/root-cert.pem`, `${mounts["istio-token"]}/${token.path}`]).toEqual(["/var/run/secrets/istio/root-cert.pem", "/var/run/secrets/tokens/istio-token"]);
      const env = Object.fromEntries(Object.entries(envOf(pod["containers"][0])).map(([k, v]) => [k, v ?? "x"]));
      const c = loadConfig({ ...env, NODE_NAME: "n", POD_NAME: "p", POD_NAMESPACE: "istio-system", INSTANCE_IP: "10.0.0.1" });
      expect(c).toMatchObject({ discovery: "xds", xdsAddress: agentsAddr, caAddress: agentsAddr, caRootCa: "/var/run/secrets/istio/root-cert.pem", xdsRootCa: "/var/run/secrets/istio/root-cert.pem", authToken: "/var/run/secrets/tokens/istio-token" });
    });

    test("the controller: one replica of the image's /controller, non-root with a read-only root, the only pod with the CA key; TokenReviews, read-only watches, the root ConfigMap", async () => {
      const objs = await render("deploy/controller");
      const pods = podSpecs(objs);
      const withKey = Object.entries(pods).filter(([, p]) => p["volumes"]?.some((v: Record<string, any>) => v["secret"]?.secretName === "cacerts")).map(([k]) => k);
      expect(withKey).toEqual(["Deployment/zt-controller"]);
      const deploy = objs.find((o) => o.kind === "Deployment")!;
      expect(deploy["spec"].replicas).toBe(1);
      const pod = pods["Deployment/zt-controller"]!;
      expect(pod["serviceAccountName"]).toBe("zt-controller");
      expect(pod["containers"]).toHaveLength(1);
      const c = pod["containers"][0] as Container;
      expect(c.image).toBe(podSpecs(objs)["DaemonSet/ztunnel"]!["containers"][0].image);
      expect([...c["command"], ...c["args"]]).toEqual(["node", "/controller/dist/cli.js", "run"]);
      // The image carries the controller at that path (deploy/Dockerfile).
      const dockerfile = readFileSync(path.join(root, "deploy/Dockerfile"), "utf8");
      expect(dockerfile).toMatch(/pnpm --filter @zt\/controller deploy --prod --legacy \/out-controller/);
      expect(dockerfile).toMatch(/^COPY --from=build \/out-controller \/controller$/m);
      expect(c["securityContext"]).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
      expect(c["securityContext"].capabilities.add).toBeUndefined();
      expect(c["securityContext"].runAsUser).toBeGreaterThan(0);
      const env = envOf(c);
      expect(env).toMatchObject({ CA_CERTS_DIR: "/etc/cacerts", POD_NAMESPACE: "metadata.namespace", TRUST_DOMAIN: "cluster.local", CLUSTER_ID: "Kubernetes", CA_TRUSTED_NODE_ACCOUNTS: "istio-system/ztunnel", GRPC_ADDR: "0.0.0.0:15012", MONITORING_ADDR: "0.0.0.0:15014" });
      // The agents' trust domain and cluster are the controller's.
      const agentEnv = envOf(pods["DaemonSet/ztunnel"]!["containers"][0]);
      expect([agentEnv["TRUST_DOMAIN"], agentEnv["CLUSTER_ID"]]).toEqual([env["TRUST_DOMAIN"], env["CLUSTER_ID"]]);
      const mounts = Object.fromEntries((c.volumeMounts ?? []).map((m) => [m.name, m]));
      expect(mounts["cacerts"]).toEqual({ name: "cacerts", mountPath: env["CA_CERTS_DIR"], readOnly: true });
      expect(c["readinessProbe"].httpGet).toEqual({ path: "/ready", port: 15014 });
      expect(c["ports"].map((p: { name: string; containerPort: number }) => `${p.name} ${p.containerPort}`)).toEqual(["grpc-xds 15012", "http-monitoring 15014"]);

      const svc = objs.find((o) => o.kind === "Service")!;
      expect(svc.metadata).toMatchObject({ name: "zt-controller", namespace: "istio-system" });
      expect(svc["spec"].selector).toEqual(deploy["spec"].selector.matchLabels);
      expect(deploy["spec"].template.metadata.labels).toMatchObject(deploy["spec"].selector.matchLabels);
      expect(svc["spec"].ports.map((p: { name: string; port: number; targetPort: string }) => `${p.name} ${p.port} ${p.targetPort}`)).toEqual(["grpc-xds 15012 grpc-xds", "http-monitoring 15014 http-monitoring"]);
      // The agents' address is this Service's.
      expect(agentsAddr).toBe(`${svc.metadata.name}.${svc.metadata.namespace}.svc:${svc["spec"].ports[0].port}`);

      const cr = objs.find((o) => o.kind === "ClusterRole")!;
      expect(grants(cr)).toEqual([
        "/namespaces: get,list,watch",
        "/pods: get,list,watch",
        "/services: get,list,watch",
        "authentication.k8s.io/tokenreviews: create",
        "discovery.k8s.io/endpointslices: get,list,watch",
        "security.istio.io/authorizationpolicies: get,list,watch",
      ]);
      const role = objs.find((o) => o.kind === "Role")!;
      expect(role.metadata.namespace).toBe("istio-system");
      expect(grants(role)).toEqual(["/configmaps: create,get,patch,update"]);
      for (const [binding, ref] of [["ClusterRoleBinding", cr], ["RoleBinding", role]] as const) {
        const b = objs.find((o) => o.kind === binding)!;
        expect(b["roleRef"]).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: ref.kind, name: ref.metadata.name });
        expect(b["subjects"]).toEqual([{ kind: "ServiceAccount", name: "zt-controller", namespace: "istio-system" }]);
      }
    });

    test("its kind overlay adds the AuthorizationPolicy resource and never pulls the image, the controller's included", async () => {
      const objs = await render("deploy/overlays/kind-controller");
      for (const o of objs) expect(() => new MODELS[`${o.apiVersion}/${o.kind}`]!(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      expect(await unknownFields(objs)).toBe("");
      expect(objs.find((o) => o.kind === "CustomResourceDefinition")?.metadata.name).toBe("authorizationpolicies.security.istio.io");
      const images = Object.values(podSpecs(objs)).flatMap((p) => [...(p["initContainers"] ?? []), ...p["containers"]].map((c: Container) => `${c.image} ${c.imagePullPolicy}`));
      expect(images).toEqual(["ztunnel-ts:dev Never", "ztunnel-ts:dev Never", "ztunnel-ts:dev Never"]);
      // Otherwise the variant itself.
      const plain = await render("deploy/controller");
      const strip = (os: Obj[]) => JSON.stringify(os.filter((o) => o.kind !== "CustomResourceDefinition")).replaceAll('"imagePullPolicy":"Never"', '"imagePullPolicy":"IfNotPresent"');
      expect(strip(objs)).toBe(strip(plain));
    });
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
