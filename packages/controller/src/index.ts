export { createXdsServer, type ClientStatus, type NackRecord, type TypeStatus, type XdsServer, type XdsServerOptions, type XdsStats } from "./xds-server.js";
