import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createLab, defaultPodIp, startEchoServer, tcpRoundTrip, type EchoConnection, type EchoServer, type Lab, type LabPod } from "@zt/lab";
import { startAgentProcess, type AgentProcess } from "./agent-process.js";
import { startClusterKube, type ClusterKube } from "./cluster-kube.js";
import { startClusterController, type ClusterController } from "./cluster-controller.js";

// The built probe (from src/ under vitest as from dist/): it runs under plain node inside namespaces.
const TOOL = fileURLToPath(new URL("../dist/tool-cli.js", import.meta.url));

export interface ClusterPodSpec {
  readonly name: string;
  /** In the mesh (protocol HBONE, captured); default true. */
  readonly enrolled?: boolean;
  /** Kubernetes mode: in the API from the start (default true); else only after `kube.announce`. */
  readonly announced?: boolean;
  readonly namespace?: string;
  readonly serviceAccount?: string;
}

export interface ClusterServiceSpec {
  readonly name: string;
  readonly namespace?: string;
  /** Inside 198.18.128.0/17. */
  readonly vip: string;
  readonly port: number;
  readonly targetPort: number;
  /** Endpoint pods by name. */
  readonly pods: readonly string[];
}

export interface ClusterSpec {
  readonly nodes: readonly { name: string; pods: readonly ClusterPodSpec[] }[];
  readonly services?: readonly ClusterServiceSpec[];
  /** YAML list items appended under `policies:` in the workload file. */
  readonly policies?: readonly string[];
  /** Ports every pod serves with an echo server (default [8080]). */
  readonly echoPorts?: readonly number[];
  /** Extra agent environment (REDIRECT_MODE=tproxy is the default). */
  readonly env?: Readonly<Record<string, string>>;
  /** Write each agent's log to `<logDir>/<node>.log` instead of keeping it in memory (`AgentProcess.logs` stays empty). */
  readonly logDir?: string;
  /**
   * net.ipv4.tcp_migrate_req in every node (default true, as the DaemonSet's init container
   * sets it): a closing agent's queued connections move to its successor instead of being reset.
   */
  readonly tcpMigrateReq?: boolean;
  /**
   * "kubernetes": the pods, services and `authorizationPolicies` are objects in a FAKE API
   * server that the agents follow (DISCOVERY=kubernetes), not a workload file.
   */
  readonly discovery?: "file" | "kubernetes" | "controller";
  /** Kubernetes mode: AuthorizationPolicy objects (security.istio.io/v1) in the API. */
  readonly authorizationPolicies?: readonly Record<string, unknown>[];
}

export interface ClusterPod extends LabPod {
  readonly enrolled: boolean;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly identity: string;
}

export interface FlowOutcome {
  readonly ok: boolean;
  /** "intact", or why the flow failed. */
  readonly detail: string;
  /** The client's own address ("ip:port"). */
  readonly client: string;
  /** The source address the destination pod saw, when its echo server got the bytes. */
  readonly seenByDestination?: string;
  readonly bytes: number;
}

export interface Cluster {
  readonly lab: Lab;
  /** Kubernetes mode: the API the agents follow (add and delete pods there). */
  readonly kube: ClusterKube | undefined;
  /** Controller mode: zt-controller, which the agents follow. */
  readonly controller: ClusterController | undefined;
  readonly dir: string;
  readonly workloadsFile: string;
  /** The current agent of each node (the last one started there). */
  readonly agents: Map<string, AgentProcess>;
  readonly pods: readonly ClusterPod[];
  pod(name: string): ClusterPod;
  agent(node: string): AgentProcess;
  /**
   * Start an agent of one node inside its namespace (a restart, or a successor next to the
   * running one: both share the node's HANDOVER_DIR); resolves when ready. stop() ends them all.
   */
  startAgent(node: string, env?: Record<string, string>): Promise<AgentProcess>;
  /** GET from an address inside a namespace (admin, stats, readiness of a node's agent). */
  httpGet(ns: string, addr: string, path: string): Promise<{ status: number; body: string }>;
  /** Connections the echo servers of a pod completed so far (remote address, bytes, sha256). */
  echoes(pod: string): readonly EchoConnection[];
  /** Plain TCP from inside a pod: send random bytes, half-close, compare the echo; failures are outcomes. */
  flow(from: string, host: string, port: number, bytes?: number): Promise<FlowOutcome>;
  stop(): Promise<void>;
}

/**
 * An emulated cluster: nodes and pods as network namespaces shaped like kind nodes
 * (@zt/lab, pod-ns mode), a workload file describing them, an echo server in every pod,
 * and one agent per node running in its node's namespace with REDIRECT_MODE=tproxy.
 * Root only. stop() ends the agents (which remove their rules) and deletes every namespace.
 */
export async function startCluster(spec: ClusterSpec): Promise<Cluster> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-cluster-"));
  const podSpecs = new Map<string, ClusterPodSpec>();
  const labNodes = spec.nodes.map((n, i) => ({
    name: n.name,
    pods: n.pods.map((p, j) => {
      podSpecs.set(p.name, p);
      return { name: p.name, ip: defaultPodIp(i, j) };
    }),
  }));
  const ipOf = (name: string): string => {
    for (const n of labNodes) for (const p of n.pods) if (p.name === name) return p.ip;
    throw new Error(`cluster spec: service endpoint ${name} is not a pod`);
  };
  const lab = await createLab({
    podMode: "pod-ns",
    nodes: labNodes,
    services: (spec.services ?? []).map((s) => ({ vip: s.vip, port: s.port, endpoints: s.pods.map((p) => ({ ip: ipOf(p), port: s.targetPort })) })),
  });
  const agents = new Map<string, AgentProcess>();
  const everyAgent = new Set<AgentProcess>();
  const echoes: EchoServer[] = [];
  const echoesOf = new Map<string, EchoServer[]>();
  let kube: ClusterKube | undefined;
  let controller: ClusterController | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all([...everyAgent].map((a) => a.stop()));
    await controller?.stop();
    await kube?.stop();
    await Promise.all(echoes.map((e) => e.stop()));
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pods: ClusterPod[] = lab.pods.map((p) => {
      const s = podSpecs.get(p.name)!;
      const namespace = s.namespace ?? "default";
      const serviceAccount = s.serviceAccount ?? p.name;
      return { ...p, enrolled: s.enrolled ?? true, namespace, serviceAccount, identity: `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}` };
    });
    const workloadsFile = path.join(dir, "workloads.yaml");
    writeFileSync(workloadsFile, workloadYaml(pods, spec));
    if (spec.discovery === "kubernetes" || spec.discovery === "controller") {
      kube = await startClusterKube(lab, dir, TOOL, pods, spec.services ?? [], spec.authorizationPolicies ?? [], (name) => podSpecs.get(name)?.announced ?? true);
    }
    const source = (node: string): Record<string, string> => (controller ? controller.env(node) : kube ? kube.env : { LOCAL_XDS_PATH: workloadsFile });
    const find = <T extends { name: string }>(list: readonly T[], name: string, what: string): T => {
      const hit = list.find((x) => x.name === name);
      if (!hit) throw new Error(`cluster has no ${what} ${name}`);
      return hit;
    };
    const httpGet = async (ns: string, addr: string, p: string): Promise<{ status: number; body: string }> =>
      JSON.parse((await lab.exec(ns, [process.execPath, TOOL, "get", addr, p])).stdout) as { status: number; body: string };
    if (spec.discovery === "controller") {
      const k = kube!;
      controller = await startClusterController({ lab, dir, kubeconfig: k.controllerKubeconfig, agentToken: (node) => k.agentToken(node), httpGet: (ns, addr, p) => httpGet(ns, addr, p), publishedRoot: () => k.publishedRoot() });
    }
    const startAgent = async (node: string, env: Record<string, string> = {}): Promise<AgentProcess> => {
      const ns = lab.node(node).ns;
      const agent = await startAgentProcess(
        node,
        {
          ...source(node),
          // With the controller, the nodes hold no CA key: a directory no agent may create.
          CA_CERTS_DIR: path.join(dir, controller ? "no-ca-on-nodes" : "cacerts"),
          REDIRECT_MODE: "tproxy",
          // The node's hostPath shared by its agents (one directory per emulated node).
          HANDOVER_DIR: path.join(dir, "handover", node),
          ADMIN_ADDR: "127.0.0.1:15000",
          STATS_ADDR: "127.0.0.1:15020",
          READINESS_ADDR: "127.0.0.1:15021",
          ...spec.env,
          ...env,
        },
        {
          prefix: ["ip", "netns", "exec", ns],
          httpGet: (addr, p) => httpGet(ns, addr, p),
          ...(spec.logDir !== undefined ? { logFile: path.join(spec.logDir, `${node}.log`), keepLogs: false } : {}),
        },
      );
      everyAgent.add(agent);
      agents.set(node, agent);
      return agent;
    };
    // Linux < 5.14 has no such setting: the agents then warn, and handovers reset queued connections.
    if (existsSync("/proc/sys/net/ipv4/tcp_migrate_req")) {
      const migrate = (spec.tcpMigrateReq ?? true) ? "1" : "0";
      for (const n of lab.nodes) await lab.exec(n.ns, ["sysctl", "-q", "-w", `net.ipv4.tcp_migrate_req=${migrate}`]);
    }
    const echoPorts = spec.echoPorts ?? [8080];
    for (const p of pods) {
      for (const port of echoPorts) {
        const e = await startEchoServer(lab, p.ns, p.ip, port);
        echoes.push(e);
        echoesOf.set(p.name, [...(echoesOf.get(p.name) ?? []), e]);
      }
    }
    // One after the other: the first start writes the shared CA.
    for (const n of lab.nodes) await startAgent(n.name);
    return {
      lab,
      kube,
      controller,
      dir,
      workloadsFile,
      agents,
      pods,
      pod: (name) => find(pods, name, "pod"),
      agent(node) {
        const a = agents.get(node);
        if (!a) throw new Error(`no agent for node ${node}`);
        return a;
      },
      startAgent,
      httpGet,
      echoes: (pod) => (echoesOf.get(find(pods, pod, "pod").name) ?? []).flatMap((e) => e.connections),
      async flow(from, host, port, bytes = 64 * 1024) {
        const pod = find(pods, from, "pod");
        try {
          const r = await tcpRoundTrip(lab, pod.ns, { host, port, bytes });
          const seen = echoes.flatMap((e) => e.connections).find((c) => c.sha256 === r.sentSha256)?.remote;
          const ok = r.receivedSha256 === r.sentSha256 && r.received === r.sent;
          return { ok, detail: ok ? "intact" : `echo differs (${r.received} of ${r.sent} bytes)`, client: r.local, bytes: r.received, ...(seen ? { seenByDestination: seen } : {}) };
        } catch (e) {
          const msg = (e as Error & { stderr?: string }).stderr ?? (e as Error).message;
          return { ok: false, detail: msg.trim().split("\n").pop() ?? "failed", client: "", bytes: 0 };
        }
      },
      stop,
    };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}

function workloadYaml(pods: readonly ClusterPod[], spec: ClusterSpec): string {
  const lines = ["workloads:"];
  for (const p of pods) {
    const svcs = (spec.services ?? []).filter((s) => s.pods.includes(p.name));
    const services = svcs.length === 0 ? "" : `, services: {${svcs.map((s) => `"${s.namespace ?? "default"}/${s.name}.${s.namespace ?? "default"}.svc.cluster.local": {${s.port}: ${s.targetPort}}`).join(", ")}}`;
    lines.push(
      `- {name: ${p.name}, namespace: ${p.namespace}, serviceAccount: ${p.serviceAccount}, workloadIps: ["${p.ip}"], protocol: ${p.enrolled ? "HBONE" : "TCP"}, node: ${p.node}, canonicalName: ${p.name.replace(/-\d+$/, "")}${services}}`,
    );
  }
  lines.push("services:");
  for (const s of spec.services ?? []) lines.push(`- {name: ${s.name}, namespace: ${s.namespace ?? "default"}, vips: ["/${s.vip}"], ports: {${s.port}: ${s.targetPort}}}`);
  lines.push("policies:");
  for (const p of spec.policies ?? []) lines.push(`- ${p}`);
  return `${lines.join("\n")}\n`;
}
