export { startAgent, VERSION, EMBEDDED_WORKLOADS, type Agent } from "./agent.js";
export { loadConfig, describeConfig, envHelp, type Config, type EnvVarHelp } from "./config.js";
export { createLogger } from "./logging.js";
export { CONTROL_LIMITS } from "./control-limits.js";
export { formatBindAddr } from "./config.js";
export { Invalid, parseBindAddr, parseDuration, parseLogLevelValue, parseOneOf, parseTrustDomain, type BindAddr } from "./config-values.js";
export type { LogLevel } from "./logging.js";
export { openKubeSource, type KubeSource } from "./kube-source.js";
