export { createXdsServer, XdsRefusal, MAX_NACK_DETAIL, type XdsCaller, type ClientStatus, type NackRecord, type TypeStatus, type XdsServer, type XdsServerOptions, type XdsStats } from "./xds-server.js";
export { createCaServer, DEFAULT_TRUSTED_NODE_ACCOUNTS, type CaServer, type CaServerOptions, type CaServerStats } from "./ca-server.js";
export { createPodIndex, podInfo, type PodInfo, type PodLookup, type PodSource } from "./pod-index.js";
export { createXdsAuthenticator } from "./xds-auth.js";
export { bearerToken, createTokenReviewer, type Caller, type TokenReviewer } from "./token-review.js";
export { cachedTokenReviewer, type TokenCacheOptions } from "./token-cache.js";
export { startController, CONTROLLER_VERSION, type Controller, type ControllerOptions } from "./controller.js";
export { loadControllerConfig, controllerEnvHelp, type ControllerConfig } from "./config.js";
export { publishRoot, ROOT_CONFIGMAP, type RootPublisher, type RootPublishOptions } from "./root-publisher.js";
