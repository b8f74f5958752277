export * from "./types.js";
export * from "./errors.js";
export * from "./ip.js";
export { parseLocalConfig, type LocalConfigDefaults } from "./local-file.js";
export { checkStringMatch } from "./local-file-policy.js";
export { closestMatch } from "./config-reader.js";
export { formatBytes } from "./local-file-errors.js";
export {
  DEFAULT_LOCAL_CONFIG_MAX_BYTES,
  loadLocalConfig,
  openLocalConfig,
  watchLocalConfig,
  type LocalConfigHandlers,
  type LocalConfigReadOptions,
  type LocalConfigWatcher,
  type LocalConfigWatchOptions,
} from "./local-file-source.js";
export { createMeshStore, EMPTY_SNAPSHOT, type MeshChange, type MeshChangeListener, type MeshStore } from "./store.js";
export { endpointCandidates, pickEndpoint, targetPort, type EndpointCandidate } from "./resolve.js";
export {
  authorize,
  matchMatches,
  policyName,
  stringMatches,
  type AuthzConnection,
  type AuthzDecision,
  type AuthzIdentity,
  type AuthzReason,
  type PolicyTrace,
} from "./authz.js";
