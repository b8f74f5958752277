import { createHash, randomBytes } from "node:crypto";
import type net from "node:net";
import { socksConnect, SocksRefused } from "./socks-client.js";

export interface FlowResult {
  readonly ok: boolean;
  /** "intact" when the echoed bytes hashed the same, else the failure. */
  readonly detail: string;
  /** The client's source address as the agent saw it ("ip:port"). */
  readonly srcAddr: string;
  readonly bytes: number;
}

/**
 * Send `size` random bytes through the SOCKS5 listener at `proxy` from `srcIp`, half-close,
 * read the echo back and compare hashes. Refusals are results, not exceptions.
 */
export async function echoFlow(proxy: { host: string; port: number }, srcIp: string, host: string, port: number, size = 64 * 1024): Promise<FlowResult> {
  let sock: net.Socket;
  try {
    sock = await socksConnect({ proxy, localAddress: srcIp, host, port });
  } catch (err) {
    const detail = err instanceof SocksRefused ? `refused (SOCKS reply ${err.reply})` : (err as Error).message;
    return { ok: false, detail, srcAddr: "", bytes: 0 };
  }
  const srcAddr = `${sock.localAddress}:${sock.localPort}`;
  const payload = randomBytes(size);
  const sent = createHash("sha256").update(payload).digest("hex");
  const got = createHash("sha256");
  let n = 0;
  return await new Promise<FlowResult>((resolve) => {
    sock.on("data", (c: Buffer) => {
      n += c.length;
      got.update(c);
    });
    sock.once("end", () => {
      sock.end();
      const same = got.digest("hex") === sent && n === size;
      resolve({ ok: same, detail: same ? "intact" : `echo differs (${n} of ${size} bytes)`, srcAddr, bytes: n });
    });
    sock.once("error", (err) => resolve({ ok: false, detail: err.message, srcAddr, bytes: n }));
    sock.resume();
    sock.end(payload);
  });
}
