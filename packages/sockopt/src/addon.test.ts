import net from "node:net";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { buffersOf, connectTcp, isReusePort, isTransparent, listenWithOptions, markOf, setTransparent, sockopt } from "./index.js";

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

  it("fixes a connection's kernel buffers before connect, and it still carries bytes", async () => {
    const { port } = await echoServer();
    const s = connectTcp("127.0.0.1", port, { bufferBytes: 64 * 1024 }, { allowHalfOpen: true });
    await once(s, "connect");
    // The kernel doubles what is asked and keeps it (no autotuning).
    expect(buffersOf(s)).toEqual({ snd: 128 * 1024, rcv: 128 * 1024 });
    const payload = Buffer.alloc(2 * 1024 * 1024, 7);
    expect((await roundTrip(s, payload)).equals(payload)).toBe(true);
    const plain = connectTcp("127.0.0.1", port, {}, { allowHalfOpen: true });
    await once(plain, "connect");
    expect(buffersOf(plain).snd).not.toBe(128 * 1024);
    plain.destroy();
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

  it("listens with SO_REUSEPORT: two servers share one address and both get connections", async () => {
    const counts = [0, 0];
    const make = (i: number): net.Server => {
      const s = net.createServer((c) => {
        counts[i]!++;
        c.end("ok");
      });
      cleanup.push(() => s.close());
      return s;
    };
    const a = make(0);
    listenWithOptions(a, "127.40.0.1", 0, { reusePort: true });
    await once(a, "listening");
    const port = (a.address() as net.AddressInfo).port;
    const b = make(1);
    listenWithOptions(b, "127.40.0.1", port, { reusePort: true });
    await once(b, "listening");
    expect([isReusePort(a), isReusePort(b), isTransparent(a)]).toEqual([true, true, false]);
    for (let i = 0; i < 64; i++) {
      const c = net.connect(port, "127.40.0.1");
      c.resume();
      await once(c, "end");
    }
    // The kernel spreads connections by a hash of the 4-tuple: 64 all on one side would be 2^-63.
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBeGreaterThan(0);
    expect(counts[0]! + counts[1]!).toBe(64);
  });

  it("a SO_REUSEPORT listener is also transparent when asked; an exclusive holder keeps its port", async () => {
    const t = net.createServer();
    cleanup.push(() => t.close());
    listenWithOptions(t, "127.40.0.2", 0, { reusePort: true, transparent: true });
    await once(t, "listening");
    expect([isReusePort(t), isTransparent(t)]).toEqual([true, true]);
    const plain = net.createServer();
    cleanup.push(() => plain.close());
    plain.listen({ host: "127.40.0.3", port: 0, exclusive: true });
    await once(plain, "listening");
    const taken = net.createServer();
    expect(() => listenWithOptions(taken, "127.40.0.3", (plain.address() as net.AddressInfo).port, { reusePort: true })).toThrow(
      expect.objectContaining({ code: "EADDRINUSE", syscall: "bind" }),
    );
    expect(taken.listening).toBe(false);
  });

  it("throws a coded error for an unusable source address", () => {
    expect(() => connectTcp("127.0.0.1", 9, { bindIp: "not-an-ip" })).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });
});
