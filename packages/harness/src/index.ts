export { socksConnect, SocksRefused, type SocksConnectOptions } from "./socks-client.js";
export { startEcho } from "./echo.js";
export { httpGet, startAgentProcess, ZTUNNEL_BIN, type AgentProcess } from "./agent-process.js";
export { startLoopbackMesh, loopbackEnv, type LoopbackMesh, type LoopbackMeshOptions } from "./loopback-mesh.js";
export { echoFlow, type FlowResult } from "./flows.js";
export { startCluster, type Cluster, type ClusterPod, type ClusterSpec, type ClusterPodSpec, type ClusterServiceSpec, type FlowOutcome } from "./cluster.js";
export type { ClusterKube } from "./cluster-kube.js";
export { startLoad, holdConnection, type Load, type LoadConnection, type HeldConnection } from "./traffic.js";
export * from "./fake-kube/index.js";
