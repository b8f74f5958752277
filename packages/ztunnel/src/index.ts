export { startAgent, VERSION, EMBEDDED_WORKLOADS, type Agent } from "./agent.js";
export { loadConfig, describeConfig, envHelp, type Config, type EnvVarHelp } from "./config.js";
export { createLogger } from "./logging.js";
export { CONTROL_LIMITS } from "./control-limits.js";
