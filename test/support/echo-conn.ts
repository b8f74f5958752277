import type net from "node:net";
import { socksConnect } from "@zt/harness";
import { until } from "./metrics.js";

export interface EchoConnection {
  readonly sock: net.Socket;
  /** The client's local port. */
  readonly port: number;
  /** Write `s` and wait until as many bytes more came back. */
  echo(s: string): Promise<void>;
}

/** A connection through an agent's SOCKS5 from `from` to an echo at `to`, that has echoed `hello`. */
export async function openEcho(proxy: { host: string; port: number }, from: string, to: { host: string; port: number }): Promise<EchoConnection> {
  const sock = await socksConnect({ proxy, localAddress: from, host: to.host, port: to.port });
  let got = 0;
  sock.on("data", (d: Buffer) => (got += d.length));
  sock.on("error", () => {});
  sock.resume();
  const echo = async (s: string): Promise<void> => {
    const want = got + s.length;
    sock.write(s);
    await until(`echo of ${s}`, () => got, (n) => n >= want);
  };
  await echo("hello");
  return { sock, port: sock.localPort!, echo };
}
