export * from "./objects.js";
export { DATAPLANE_MODE, enrollment, owner, podIps, podWorkload } from "./pods.js";
export { kubeService, selects, SERVICE_NAME_LABEL } from "./services.js";
export { translatePolicies, translatePolicy } from "./policies.js";
export { createTranslator, translate, type Translation, type Translator } from "./translate.js";
export { startReflector, type Reflector, type ReflectorHandlers, type ReflectorOptions, type ResourceRef, type SyncStatus } from "./reflector.js";
export { KubeConfig } from "@kubernetes/client-node";
export { RESOURCES as KUBE_RESOURCES, startKubeDiscovery, type KubeDiscovery, type KubeDiscoveryOptions, type SnapshotMeta } from "./discovery.js";
