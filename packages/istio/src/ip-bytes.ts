import ipaddr from "ipaddr.js";
import { normalizeIp } from "@zt/state";

/** 4 bytes for IPv4, 16 for IPv6 (the wire form of addresses). */
export function ipToBytes(ip: string): Buffer {
  return Buffer.from(ipaddr.parse(ip).toByteArray());
}

/** The normalized text of 4 or 16 address bytes; undefined for any other length. */
export function bytesToIp(b: Uint8Array): string | undefined {
  if (b.length !== 4 && b.length !== 16) return undefined;
  return normalizeIp(ipaddr.fromByteArray([...b]).toString());
}
