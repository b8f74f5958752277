export * from "./objects.js";
export { DATAPLANE_MODE, enrollment, owner, podIps, podWorkload } from "./pods.js";
export { kubeService, selects, SERVICE_NAME_LABEL } from "./services.js";
export { translatePolicies, translatePolicy } from "./policies.js";
export { translate, type Translation } from "./translate.js";
export { startReflector, type Reflector, type ReflectorHandlers, type ReflectorOptions, type ResourceRef, type SyncStatus } from "./reflector.js";
export { KubeConfig } from "@kubernetes/client-node";
export { RESOURCES as KUBE_RESOURCES, startKubeDiscovery, type KubeDiscovery, type KubeDiscoveryOptions } from "./discovery.js";
