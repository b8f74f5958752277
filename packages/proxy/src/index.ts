export * from "./types.js";
export * from "./errors.js";
export type { ProxyContext } from "./context.js";
export { createHbonePool, type HbonePool, type PoolKey, type PoolOptions } from "./pool.js";
export { createInboundServer, type InboundServer } from "./inbound.js";
export { createOutboundServer, createSocks5Server, createPlaintextInboundServer, createProxyListener } from "./listeners.js";
export { route, baggage, traceparent, type Route, type OutboundRequest } from "./outbound.js";
export { splice, type SpliceOutcome } from "./splice.js";
export { readSocksRequest, SocksReply } from "./socks5.js";
