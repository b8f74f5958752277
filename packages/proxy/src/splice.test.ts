import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { splice, type SpliceOutcome } from "./splice.js";

/** A connected pair on loopback: the accepted side (half-open allowed, as the agent's) and the client. */
async function pair(): Promise<{ accepted: net.Socket; client: net.Socket; server: net.Server }> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const got = new Promise<net.Socket>((r) => server.once("connection", r));
  const client = net.connect({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port, allowHalfOpen: true });
  const accepted = await got;
  await new Promise((r) => (client.connecting ? client.once("connect", r) : r(undefined)));
  return { accepted, client, server };
}

const listeners = (s: net.Socket): number => s.eventNames().reduce((n, e) => n + s.listenerCount(e), 0);
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function spliced(): Promise<{ left: net.Socket; right: net.Socket; a: net.Socket; b: net.Socket; added: number[]; outcome: Promise<SpliceOutcome> }> {
  const x = await pair();
  const y = await pair();
  closers.push(() => x.server.close(), () => y.server.close(), () => x.client.destroy(), () => y.client.destroy());
  const before = [listeners(x.accepted), listeners(y.accepted)];
  const outcome = new Promise<SpliceOutcome>((r) => splice(x.accepted, y.accepted, r));
  return { left: x.client, right: y.client, a: x.accepted, b: y.accepted, added: [listeners(x.accepted) - before[0]!, listeners(y.accepted) - before[1]!], outcome };
}

const read = (s: net.Socket): Promise<string> =>
  new Promise((resolve) => {
    let got = "";
    s.on("data", (c: Buffer) => (got += c.toString()));
    s.once("end", () => resolve(got));
  });

describe("splice", () => {
  test("half-close: each direction ends on its own, and the relay ends clean", async () => {
    const { left, right, outcome } = await spliced();
    const atRight = read(right);
    left.end("ping");
    expect(await atRight).toBe("ping");
    // The other direction still flows after the first one ended.
    const atLeft = read(left);
    right.end("pong");
    expect(await atLeft).toBe("pong");
    expect((await outcome).reset).toBe(false);
  });

  test("a reset on one side resets the other", async () => {
    const { left, right, outcome } = await spliced();
    const ended = new Promise<string>((r) => {
      right.once("error", (e: NodeJS.ErrnoException) => r(e.code ?? "error"));
      right.once("end", () => r("fin"));
    });
    right.resume();
    left.resetAndDestroy();
    expect(await ended).toBe("ECONNRESET");
    expect((await outcome).reset).toBe(true);
  });

  test("back-pressure: a reader that stops pauses its source, and every byte arrives once it reads again", async () => {
    const { left, right, a, outcome } = await spliced();
    const chunk = Buffer.alloc(64 * 1024, 1);
    const total = 256 * chunk.length;
    for (let i = 0; i < 256; i++) left.write(chunk);
    left.end();
    // Nobody reads on the right: the relay stops reading the left.
    for (let i = 0; i < 100 && a.readableFlowing !== false; i++) await new Promise((r) => setTimeout(r, 20));
    expect(a.readableFlowing).toBe(false);
    let got = 0;
    right.on("data", (c: Buffer) => (got += c.length));
    await new Promise((r) => right.once("end", r));
    expect(got).toBe(total);
    right.end();
    expect((await outcome).reset).toBe(false);
  });

  test("an idle relay holds one listener per event and side (not pipe()'s many)", async () => {
    const { added } = await spliced();
    // error, close, data, end and drain on each socket.
    expect(added).toEqual([5, 5]);
  });
});
