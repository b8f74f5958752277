export * from "./messages.js";
export * from "./codec.js";
export * from "./workload-api.js";
export { bytesToIp, ipToBytes } from "./ip-bytes.js";
export { ADS_SERVICE, CA_SERVICE } from "./grpc.js";
export { startXdsClient, xdsNode, type XdsClient, type XdsClientOptions, type XdsClientStatus, type XdsConnectionState, type XdsLogger, type XdsNodeInfo, type XdsTypeHandler, type XdsTypeStatus } from "./xds-client.js";
export { createIstioCaClient, type IstioCaClient, type IstioCaClientOptions } from "./ca-client.js";
export { checkCaAnswer, uriSans } from "./ca-answer.js";
