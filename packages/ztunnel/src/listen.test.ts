import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ZtError } from "@zt/errors";
import { listen } from "./listen.js";

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function server(): net.Server {
  const s = net.createServer((c) => c.destroy());
  servers.push(s);
  return s;
}

describe("listen", () => {
  it("resolves with the bound address", async () => {
    const a = await listen(server(), { ip: "127.0.0.1", port: 0 });
    expect(a.address).toBe("127.0.0.1");
    expect(a.port).toBeGreaterThan(0);
  });

  it("names the address, the errno and the variable when the port is taken", async () => {
    const { port } = await listen(server(), { ip: "127.0.0.1", port: 0 });
    const err = await listen(server(), { ip: "127.0.0.1", port }, { env: "ADMIN_ADDR" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZtError);
    expect((err as ZtError).code).toBe("BIND_FAILED");
    expect((err as ZtError).message).toBe(
      `address already in use: another agent or process holds 127.0.0.1:${port}; set ADMIN_ADDR`,
    );
    expect(((err as ZtError).cause as NodeJS.ErrnoException).code).toBe("EADDRINUSE");
  });

  it("with reusePort, a second listener (the node's next agent) shares the address; an exclusive one does not", async () => {
    const { port } = await listen(server(), { ip: "127.40.1.1", port: 0 }, { reusePort: true });
    const again = await listen(server(), { ip: "127.40.1.1", port }, { reusePort: true });
    expect(again.port).toBe(port);
    const err = await listen(server(), { ip: "127.40.1.1", port }, { env: "OUTBOUND_ADDR" }).catch((e: unknown) => e);
    expect((err as ZtError).code).toBe("BIND_FAILED");
    expect((err as ZtError).message).toContain(`another agent or process holds 127.40.1.1:${port}; set OUTBOUND_ADDR`);
  });

  it("explains an address that is not on this host", async () => {
    const err = await listen(server(), { ip: "192.0.2.123", port: 0 }).catch((e: unknown) => e);
    expect((err as ZtError).code).toBe("BIND_FAILED");
    expect((err as ZtError).message).toMatch(/192\.0\.2\.123 is not an address of this host/);
  });
});
