import http2 from "node:http2";
import net from "node:net";
import { createHash } from "node:crypto";
import { afterAll, expect, test } from "vitest";
import { splice, SPLICE_BUFFER_BYTES, useSpliceBuffers, type SpliceOutcome } from "./splice.js";

// A data-path worker calls useSpliceBuffers() first (packages/ztunnel/src/workers/worker-thread.ts).
// Here: plain TCP and h2c on 127.0.0.1, a TCP socket spliced to an HTTP/2 stream.
useSpliceBuffers();
const closers: (() => void)[] = [];
afterAll(() => closers.forEach((c) => c()));

function listen(server: net.Server | http2.Http2Server): Promise<number> {
  closers.push(() => server.close());
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r((server.address() as net.AddressInfo).port)));
}

test("spliced sockets and HTTP/2 streams buffer SPLICE_BUFFER_BYTES, and 8 MiB cross intact with a FIN", async () => {
  // The far end of the HTTP/2 stream hashes what it gets, answers with the hash and ends.
  const h2 = http2.createServer();
  h2.on("stream", (stream) => {
    const hash = createHash("sha256");
    stream.on("data", (c: Buffer) => hash.update(c));
    stream.on("end", () => stream.end(hash.digest("hex")));
  });
  const h2Port = await listen(h2);
  const session = http2.connect(`http://127.0.0.1:${h2Port}`);
  closers.push(() => session.destroy());
  const seen: { stream: number; tcp: number; outcome?: SpliceOutcome }[] = [];
  const front = net.createServer({ allowHalfOpen: true }, (tcp) => {
    const stream = session.request({ ":method": "POST", ":path": "/" });
    const entry: (typeof seen)[number] = { stream: stream.writableHighWaterMark, tcp: tcp.writableHighWaterMark };
    seen.push(entry);
    splice(tcp, stream, (o) => (entry.outcome = o));
  });
  const port = await listen(front);
  const payload = Buffer.alloc(8 << 20, 0x61);
  const client = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  let answer = "";
  client.on("data", (c: Buffer) => (answer += c.toString()));
  await new Promise<void>((resolve, reject) => {
    client.once("error", reject);
    client.once("end", () => resolve());
    client.end(payload);
  });
  client.destroy();
  expect(answer).toBe(createHash("sha256").update(payload).digest("hex"));
  expect(seen).toHaveLength(1);
  expect(seen[0]!.stream).toBe(SPLICE_BUFFER_BYTES);
  expect(seen[0]!.tcp).toBe(SPLICE_BUFFER_BYTES);
  await new Promise((r) => setTimeout(r, 50));
  expect(seen[0]!.outcome?.reset).toBe(false);
});
