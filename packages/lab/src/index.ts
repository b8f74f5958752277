export { createLab, type Lab, type LabNode, type LabPod } from "./create-lab.js";
export {
  FABRIC_CIDR,
  POD_GATEWAY,
  SERVICE_CIDR,
  checkPrefix,
  defaultPodIp,
  nodePodCidr,
  nodeUplinkIp,
  planLab,
  simpleLabSpec,
  type LabPlan,
  type LabSpec,
  type PlannedNode,
  type PlannedPod,
  type PodMode,
  type ServiceSpec,
} from "./plan.js";
export { serviceRules } from "./services.js";
export { topologySteps, type Step } from "./topology.js";
export { cleanNamespaces, ownerPid } from "./clean.js";
export { LabCommandError, formatCommand, listNamespaces, run, type RunOptions, type RunResult } from "./run.js";
export { startEchoServer, tcpRoundTrip, type EchoConnection, type EchoServer, type RoundTrip } from "./probe.js";
