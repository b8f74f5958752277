import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ProxyError } from "./errors.js";
import { readSocksRequest, replyFor, type SocksTarget } from "./socks5.js";

// The SOCKS5 parser over real loopback sockets: what a client sends, what it gets back.
let server: net.Server;
let port = 0;
let next: ((s: net.Socket) => void) | undefined;

beforeAll(async () => {
  server = net.createServer({ pauseOnConnect: true }, (s) => next?.(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Send `parts` (with a pause between them) and collect what the parser decided and what the client received. */
async function exchange(parts: number[][], timeoutMs = 2000): Promise<{ target?: SocksTarget; error?: ProxyError; received: number[] }> {
  const accepted = new Promise<net.Socket>((r) => (next = r));
  const client = net.connect({ host: "127.0.0.1", port });
  const received: number[] = [];
  client.on("data", (c: Buffer) => received.push(...c));
  client.on("error", () => {});
  const serverSide = await accepted;
  const result = readSocksRequest(serverSide, timeoutMs).then(
    (target) => ({ target }),
    (error: ProxyError) => ({ error }),
  );
  for (const p of parts) {
    client.write(Buffer.from(p));
    await new Promise((r) => setTimeout(r, 5));
  }
  const out = await result;
  await new Promise((r) => setTimeout(r, 20));
  client.destroy();
  serverSide.destroy();
  return { ...out, received };
}

describe("readSocksRequest", () => {
  test("IPv4 CONNECT", async () => {
    const r = await exchange([[5, 1, 0], [5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90]]);
    expect(r.target).toEqual({ kind: "ip", ip: "10.1.2.3", port: 8080 });
    expect(r.received).toEqual([5, 0]);
  });

  test("IPv6 CONNECT", async () => {
    const v6 = [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1];
    const r = await exchange([[5, 1, 0], [5, 1, 0, 4, ...v6, 0, 80]]);
    expect(r.target).toEqual({ kind: "ip", ip: "2001:db8::1", port: 80 });
  });

  test("a hostname, and a hostname that is an IP literal", async () => {
    const name = [...Buffer.from("echo.default.svc.cluster.local")];
    expect((await exchange([[5, 1, 0], [5, 1, 0, 3, name.length, ...name, 0, 80]])).target).toEqual({ kind: "name", host: "echo.default.svc.cluster.local", port: 80 });
    const lit = [...Buffer.from("10.0.0.1")];
    expect((await exchange([[5, 1, 0], [5, 1, 0, 3, lit.length, ...lit, 0, 80]])).target).toEqual({ kind: "ip", ip: "10.0.0.1", port: 80 });
  });

  test("a request split into single bytes", async () => {
    const bytes = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 22];
    expect((await exchange(bytes.map((b) => [b]))).target).toEqual({ kind: "ip", ip: "127.0.0.1", port: 22 });
  });

  test("no acceptable authentication method: 05 FF", async () => {
    const r = await exchange([[5, 1, 2]]);
    expect(r.error?.code).toBe("SOCKS_NO_ACCEPTABLE_AUTH");
    expect(r.received).toEqual([5, 0xff]);
  });

  test("not SOCKS5 at all: no SOCKS reply (there is none before a greeting)", async () => {
    const r = await exchange([[...Buffer.from("GET / HTTP/1.1\r\n")]]);
    expect(r.error?.code).toBe("SOCKS_MALFORMED");
    expect(r.received).toEqual([]);
  });

  test("a first read over the handshake limit: no SOCKS reply", async () => {
    const r = await exchange([[5, 1, 0, ...Array<number>(700).fill(1)]]);
    expect(r.error?.code).toBe("SOCKS_MALFORMED");
    expect(r.received).toEqual([]);
  });

  test("BIND is not supported: reply 07", async () => {
    const r = await exchange([[5, 1, 0], [5, 2, 0, 1, 1, 2, 3, 4, 0, 80]]);
    expect(r.error?.code).toBe("SOCKS_UNSUPPORTED_COMMAND");
    expect(r.received.slice(2, 4)).toEqual([5, 7]);
  });

  test("an unknown address type: reply 08", async () => {
    const r = await exchange([[5, 1, 0], [5, 1, 0, 9, 1, 2, 3, 4, 0, 80]]);
    expect(r.error?.code).toBe("SOCKS_BAD_ADDRESS_TYPE");
    expect(r.received.slice(2, 4)).toEqual([5, 8]);
  });

  test("data sent before the reply is refused", async () => {
    const r = await exchange([[5, 1, 0], [5, 1, 0, 1, 1, 2, 3, 4, 0, 80, 0x41]]);
    expect(r.error?.code).toBe("SOCKS_MALFORMED");
    expect(r.received.slice(0, 4)).toEqual([5, 0, 5, 1]);
  });

  test("a client that stops mid-handshake times out", async () => {
    expect((await exchange([[5, 1, 0], [5, 1]], 100)).error?.code).toBe("SOCKS_TIMEOUT");
  });
});

describe("replyFor", () => {
  test("maps refusals to RFC 1928 codes", () => {
    expect(replyFor(new ProxyError("UNKNOWN_SOURCE", ""))).toBe(2);
    expect(replyFor(new ProxyError("AUTHZ_DENIED", ""))).toBe(2);
    expect(replyFor(new ProxyError("REGISTRY_ONLY", ""))).toBe(2);
    expect(replyFor(new ProxyError("NO_HEALTHY_ENDPOINT", ""))).toBe(4);
    expect(replyFor(new ProxyError("UPSTREAM_REFUSED", ""))).toBe(5);
    expect(replyFor(new ProxyError("UPSTREAM_TIMEOUT", ""))).toBe(4);
    expect(replyFor(new ProxyError("TLS_FAILURE", ""))).toBe(1);
  });
});
