import type { PeerIdentity } from "@zt/identity";
import { formatHostPort, parseHostPort, workloadIdentity, type MeshStore, type Workload } from "@zt/state";

/** Who an HBONE stream comes from, as far as this agent can verify it. */
export interface InboundSource {
  /** "ip:port" used for policy, logs, metrics and the upstream bind. */
  readonly addr: string;
  readonly ip: string;
  /** The source workload, only when the `forwarded` address belongs to the identity the peer proved. */
  readonly workload: Workload | undefined;
  /** True when `addr` is the `forwarded` address (verified); false when it is the peer's TCP address. */
  readonly forwarded: boolean;
}

/**
 * One verified source address. The `forwarded` header is a claim by the peer: it is
 * used only when the address belongs to a workload whose identity is the one the peer's
 * certificate proved. Otherwise the peer's own TCP address is the source: a peer can
 * neither satisfy an ALLOW on `sourceIps`, dodge a DENY on it, be credited as another
 * workload in logs and metrics, nor make this agent speak from an address it does not own.
 */
export function verifiedSource(store: MeshStore, peer: PeerIdentity | undefined, forwardedHeader: string | string[] | undefined, peerAddr: { ip: string; port: number }): InboundSource {
  const claimed = parseForwardedFor(forwardedHeader);
  const wl = claimed ? store.workloadByIp(claimed.ip) : undefined;
  if (claimed && wl && peer && workloadIdentity(wl) === peer.id) {
    return { addr: formatHostPort(claimed.ip, claimed.port), ip: claimed.ip, workload: wl, forwarded: true };
  }
  return { addr: formatHostPort(peerAddr.ip, peerAddr.port), ip: peerAddr.ip, workload: undefined, forwarded: false };
}

/** The `for=` address of a `forwarded` header (RFC 7239), normalized; undefined when absent or not ip:port. */
export function parseForwardedFor(v: string | string[] | undefined): { ip: string; port: number } | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const m = /for="?([^";,]+)"?/i.exec(s.slice(0, 256));
  return m?.[1] ? parseHostPort(m[1]) : undefined;
}
