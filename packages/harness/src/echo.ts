import net from "node:net";

/** A TCP echo server for demos, tests and benchmarks; a FIN from the client is answered with a FIN after the echo. */
export async function startEcho(host: string, port: number): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  server.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.removeListener("error", reject);
      resolve();
    });
  });
  return server;
}
