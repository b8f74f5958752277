export { CATALOG, SocksReply, isConnectionCode, isErrorCode, type ConnectionCode, type ErrorCode, type ErrorLevel, type ErrorSpec, type ResponseFlag } from "./catalog.js";
export { ZtError } from "./zt-error.js";
