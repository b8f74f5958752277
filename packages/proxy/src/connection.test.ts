import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { ProxyContext } from "./context.js";
import { createSocks5Server } from "./outbound.js";
import { testContext } from "./test-support/context.js";
import type { ConnectionSnapshot } from "./types.js";

// What the admin lists of a connection (LiveConnection.snapshot and ctx.connecting), over
// real loopback sockets: SOCKS5 → passthrough to a local echo, through a dialer that holds
// the connect until the test lets it go.
const NET = "127.97.0";
const YAML = `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${NET}.10"], protocol: HBONE, node: node-a}
`;
let ctx: ProxyContext & { dispose(): void };
let socks: net.Server;
let echo: net.Server;
const echoPort = 18080;
const held: (() => void)[] = [];
const served: net.Socket[] = [];

beforeAll(async () => {
  ctx = await testContext(YAML, {
    // The dial starts only when the test says so: meanwhile the connection is "connecting".
    dialer: (ip, port) => {
      const s = new net.Socket({ allowHalfOpen: true });
      held.push(() => s.connect({ host: ip, port, noDelay: true }));
      return s;
    },
  });
  // Echoes, and keeps its side open after the client's FIN until the test ends it.
  echo = net.createServer({ allowHalfOpen: true }, (s) => {
    served.push(s);
    s.on("data", (d: Buffer) => s.write(d));
  });
  await new Promise<void>((r) => echo.listen(echoPort, `${NET}.20`, () => r()));
  socks = createSocks5Server(ctx);
  await new Promise<void>((r) => socks.listen(0, `${NET}.1`, () => r()));
});
afterAll(async () => {
  socks.close();
  echo.close();
  ctx.dispose();
});

const until = async <T>(what: string, get: () => T, ok: (v: T) => boolean): Promise<T> => {
  // Up to 10 s: a loaded machine is slow, never wrong.
  for (let i = 0; i < 1000; i++) {
    const v = get();
    if (ok(v)) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
};
const liveSnapshots = (): ConnectionSnapshot[] => [...ctx.live].map((c) => c.snapshot());

describe("a connection as the admin lists it", () => {
  test("connecting while dialled, then open with the bytes each way, half-closed after one FIN, gone once closed", async () => {
    const client = net.connect({ host: `${NET}.1`, port: (socks.address() as net.AddressInfo).port, localAddress: `${NET}.10`, allowHalfOpen: true });
    let got = "";
    client.on("data", (d: Buffer) => (got += d.toString()));
    await new Promise((r) => client.once("connect", r));
    client.write(Buffer.from([5, 1, 0]));
    client.write(Buffer.from([5, 1, 0, 1, 127, 97, 0, 20, echoPort >> 8, echoPort & 0xff]));
    const dialling = await until("the dial", () => [...ctx.connecting], (c) => c.length === 1);
    expect(dialling[0]).toMatchObject({ direction: "outbound", listener: "socks5", src: { addr: `${NET}.10:${client.localPort}`, workload: "sleep", namespace: "default" }, dst: { addr: `${NET}.20:${echoPort}` } });
    expect(ctx.live.size).toBe(0);

    held.shift()!();
    await until("the relay", () => ctx.live.size, (n) => n === 1);
    expect(ctx.connecting.size).toBe(0);
    await until("the SOCKS5 reply", () => got.length, (n) => n >= 10);
    got = "";
    client.write("hello world");
    await until("the echo", () => got, (g) => g === "hello world");
    const open = liveSnapshots()[0]!;
    // The SOCKS5 handshake's bytes are not the connection's.
    expect(open).toMatchObject({ state: "open", bytesSent: 11, bytesRecv: 11, security: "none", service: null, hboneAddr: null });
    expect(open.startMs).toBeLessThanOrEqual(Date.now());

    client.end();
    await until("half-closed", () => liveSnapshots()[0]?.state, (s) => s === "half-closed");
    served.at(-1)!.write("bye");
    await until("the echo's last words", () => liveSnapshots()[0]?.bytesRecv, (n) => n === 14);
    served.at(-1)!.end();
    await until("closed", () => ctx.live.size, (n) => n === 0);
    expect(ctx.closed.at(-1)).toMatchObject({ bytesSent: 11, bytesRecv: 14, flag: "-" });
    client.destroy();
  });

  test("a refused dial leaves nothing listed as connecting", async () => {
    const client = net.connect({ host: `${NET}.1`, port: (socks.address() as net.AddressInfo).port, localAddress: `${NET}.10` });
    client.on("error", () => {});
    client.on("data", () => {});
    await new Promise((r) => client.once("connect", r));
    client.write(Buffer.from([5, 1, 0]));
    // Nothing listens on port 1.
    client.write(Buffer.from([5, 1, 0, 1, 127, 97, 0, 20, 0, 1]));
    await until("the dial", () => ctx.connecting.size, (n) => n === 1);
    held.shift()!();
    await until("the refusal", () => ctx.connecting.size, (n) => n === 0);
    expect(ctx.live.size).toBe(0);
    expect(ctx.closed.at(-1)?.error?.code).toBe("UPSTREAM_REFUSED");
    client.destroy();
  });
});
