/**
 * The emulated cluster's controller mode: zt-controller runs on the first node (as a
 * control-plane pod would, on the node's address, port 15012) and follows the FAKE API
 * server; the agents reach it with CA_ADDRESS/XDS_ADDRESS, verify it against the mesh
 * root it published (ConfigMap istio-ca-root-cert, which the harness mounts as a kubelet would), and authenticate with a projected-style service-account token the FAKE
 * API server minted for their own ztunnel pod. They get neither the root key nor a
 * kubeconfig.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Lab } from "@zt/lab";
import { onJsonLines } from "./json-lines.js";

export const CONTROLLER_BIN = fileURLToPath(new URL("../../controller/dist/cli.js", import.meta.url));
const CONTROLLER_NAME = "zt-controller.istio-system.svc";

export interface ClusterController {
  /** Where agents dial it ("<node ip>:15012"). */
  readonly address: string;
  /** The mesh root the agents verify it (and each other) with. */
  readonly rootFile: string;
  /** The controller's log lines (JSON), across restarts. */
  readonly logs: Record<string, unknown>[];
  /** The agents' environment for their node (the token file is theirs alone). */
  env(node: string): Record<string, string>;
  /** GET on its monitoring port (/ready, /metrics, /debug/status). */
  get(p: string): Promise<{ status: number; body: string }>;
  /** Stop it (SIGTERM) and start it again on the same CA files. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface ControllerDeps {
  readonly lab: Lab;
  readonly dir: string;
  readonly kubeconfig: string;
  /** A token for the ztunnel pod of `node` (audience istio-ca), from the FAKE API server. */
  readonly agentToken: (node: string) => string;
  readonly httpGet: (ns: string, addr: string, p: string) => Promise<{ status: number; body: string }>;
  /** root-cert.pem of ConfigMap istio-system/istio-ca-root-cert in the API, as the controller published it. */
  readonly publishedRoot: () => string | undefined;
}

export async function startClusterController(d: ControllerDeps): Promise<ClusterController> {
  const home = d.lab.nodes[0]!;
  const address = `${home.uplinkIp}:15012`;
  const caDir = path.join(d.dir, "controller-cacerts");
  const rootFile = path.join(d.dir, "mesh-root.pem");
  const logs: Record<string, unknown>[] = [];
  let proc: ChildProcess | undefined;
  const get = (p: string): Promise<{ status: number; body: string }> => d.httpGet(home.ns, "127.0.0.1:15014", p);

  const start = async (): Promise<void> => {
    const child = spawn("ip", ["netns", "exec", home.ns, process.execPath, CONTROLLER_BIN, "run"], {
      env: {
        PATH: process.env["PATH"] ?? "",
        KUBECONFIG: d.kubeconfig,
        CA_CERTS_DIR: caDir,
        GRPC_ADDR: address,
        MONITORING_ADDR: "127.0.0.1:15014",
        LOG_FORMAT: "json",
        LOG_LEVEL: process.env["ZT_CONTROLLER_LOG_LEVEL"] ?? "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc = child;
    // It dies with the harness, like the agents.
    const kill = (): void => void child.kill("SIGKILL");
    process.once("exit", kill);
    child.once("exit", () => process.off("exit", kill));
    let stderr = "";
    onJsonLines(child.stdout!, (l) => logs.push(l));
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`zt-controller exited during start (${child.exitCode}): ${stderr}${logs.map((l) => JSON.stringify(l)).join("\n")}`);
      const r = await get("/ready").catch(() => undefined);
      if (r?.status === 200) break;
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`zt-controller not ready in time: ${r?.body ?? "not answering"} ${stderr}`);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    // What the kubelet would mount from the ConfigMap the controller published (ready means published).
    const root = d.publishedRoot();
    if (root === undefined) throw new Error("zt-controller is ready but has not published ConfigMap istio-system/istio-ca-root-cert");
    writeFileSync(rootFile, root);
  };
  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const closed = new Promise((r) => p.once("close", r));
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), 5000);
    await closed;
    clearTimeout(timer);
  };
  await start();
  return {
    address,
    rootFile,
    logs,
    env: (node) => {
      const tokenFile = path.join(d.dir, `istio-token-${node}`);
      writeFileSync(tokenFile, d.agentToken(node));
      return {
        CA_ADDRESS: address,
        XDS_ADDRESS: address,
        ALT_CA_HOSTNAME: CONTROLLER_NAME,
        ALT_XDS_HOSTNAME: CONTROLLER_NAME,
        CA_ROOT_CA: rootFile,
        XDS_ROOT_CA: rootFile,
        AUTH_TOKEN: tokenFile,
        POD_NAME: `ztunnel-${node}`,
        POD_NAMESPACE: "istio-system",
        INSTANCE_IP: d.lab.nodes.find((n) => n.name === node)?.uplinkIp ?? "",
      };
    },
    get,
    async restart() {
      await stop();
      await start();
    },
    stop,
  };
}
