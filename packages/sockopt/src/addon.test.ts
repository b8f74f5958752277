import net from "node:net";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { connectTcp, isTransparent, markOf, setTransparent, sockopt } from "./index.js";

// Loopback only. The addon is built by the install step; a missing addon fails here.
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

async function echoServer(): Promise<{ server: net.Server; port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    peers.push(`${s.remoteAddress}`);
    s.pipe(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanup.push(() => server.close());
  return { server, port: (server.address() as net.AddressInfo).port, peers };
}

async function roundTrip(s: net.Socket, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on("data", (c: Buffer) => chunks.push(c));
  s.end(payload);
  await once(s, "end");
  return Buffer.concat(chunks);
}

describe("socket-option addon", () => {
  it("is loaded", () => {
    expect(sockopt.reason).toBeUndefined();
    expect(sockopt.available).toBe(true);
  });

  it("makes a listener transparent", async () => {
    const { server } = await echoServer();
    expect(isTransparent(server)).toBe(false);
    setTransparent(server);
    expect(isTransparent(server)).toBe(true);
  });

  it("opens a marked connection that carries bytes and half-closes like net.connect", async () => {
    const { port } = await echoServer();
    const s = connectTcp("127.0.0.1", port, { mark: 0x539 }, { allowHalfOpen: true });
    cleanup.push(() => s.destroy());
    await once(s, "connect");
    expect(markOf(s)).toBe(0x539);
    const payload = Buffer.alloc(300_000, 7);
    // The server echoes, then ends after our FIN: everything comes back after we ended.
    expect((await roundTrip(s, payload)).equals(payload)).toBe(true);
  });

  it("speaks from the address it is given (transparent bind)", async () => {
    const { port, peers } = await echoServer();
    const s = connectTcp("127.0.0.1", port, { bindIp: "127.0.0.77", transparent: true }, { allowHalfOpen: true });
    cleanup.push(() => s.destroy());
    await once(s, "connect");
    expect(s.localAddress).toBe("127.0.0.77");
    expect(isTransparent(s)).toBe(true);
    expect((await roundTrip(s, Buffer.from("hello"))).toString()).toBe("hello");
    expect(peers).toEqual(["127.0.0.77"]);
  });

  it("reports a refused connection as an 'error' event, like net.connect", async () => {
    const { server, port } = await echoServer();
    server.close();
    await once(server, "close");
    const s = connectTcp("127.0.0.1", port, { mark: 1 });
    const [err] = (await once(s, "error")) as [NodeJS.ErrnoException];
    expect(err.code).toBe("ECONNREFUSED");
  });

  it("throws a coded error for an unusable source address", () => {
    expect(() => connectTcp("127.0.0.1", 9, { bindIp: "not-an-ip" })).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });
});
