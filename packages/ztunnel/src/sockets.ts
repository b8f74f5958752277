/**
 * How the data path's sockets are made, the same in the main thread and in every worker:
 * the dialers (marked, transparent from the client's address under tproxy; small fixed
 * buffers towards destinations) and how a data-path listener binds. Under tproxy every
 * listener is SO_REUSEPORT (the node's next agent binds beside it) and transparent where
 * traffic is captured. With several workers every listener is SO_REUSEPORT too: each
 * worker binds its own and the kernel spreads connections across them.
 */
import type net from "node:net";
import { plainDialer, type Dialer } from "@zt/proxy";
import { connectTcp, sockopt } from "@zt/sockopt";
import type { Config } from "./config.js";
import type { ListenOpts } from "./listen.js";

export type DataPathListener = "inbound" | "outbound" | "inbound_plaintext" | "socks5";

export interface DataPathSockets {
  /** Opens HBONE connections to other nodes' agents (kernel buffers autotuned). */
  readonly dialer: Dialer;
  /** Opens connections to destinations (pods, passthrough): fixed, small kernel buffers when the addon is there. */
  readonly upstreamDialer: Dialer;
  /** How a data-path listener binds. */
  listenOptions(name: DataPathListener): ListenOpts;
}

/**
 * SO_SNDBUF/SO_RCVBUF of the agent's sockets to destinations (doubled by the kernel): the
 * kernel memory one proxied connection can pin stays ~256 KiB however the peers behave
 * (a destination that does not read, a client that never opens its window), instead of
 * autotuning up to tcp_wmem/tcp_rmem's maximum. Destinations are on this node, a few tens
 * of microseconds away, so this is no limit on throughput.
 */
const UPSTREAM_BUFFER_BYTES = 64 * 1024;

/** `shared`: several workers bind each listener (SO_REUSEPORT, which needs the addon). */
export function dataPathSockets(config: Config, isLocal: (ip: string) => boolean, mark: number, shared: boolean): DataPathSockets {
  if (config.redirectMode === "none") {
    return {
      dialer: plainDialer,
      upstreamDialer: sockopt.available ? (ip, port) => noDelay(connectTcp(ip, port, { bufferBytes: UPSTREAM_BUFFER_BYTES }, { allowHalfOpen: true })) : plainDialer,
      listenOptions: () => (shared ? { reusePort: true } : {}),
    };
  }
  const open = (bufferBytes: number): Dialer => (ip, port, srcIp) => {
    // A local source (a SOCKS5 client on this host) needs no spoofing, and a loopback one cannot leave the host.
    const bindIp = srcIp !== undefined && !isLocal(srcIp) && !srcIp.includes(":") ? srcIp : undefined;
    return noDelay(connectTcp(ip, port, { mark, bindIp, transparent: bindIp !== undefined, bufferBytes }, { allowHalfOpen: true }));
  };
  return {
    dialer: open(0),
    upstreamDialer: open(UPSTREAM_BUFFER_BYTES),
    // SOCKS5 is not captured, but the successor binds it too while this agent drains.
    listenOptions: (name) => ({ reusePort: true, transparent: name !== "socks5" }),
  };
}

function noDelay(s: net.Socket): net.Socket {
  s.setNoDelay(true);
  return s;
}
