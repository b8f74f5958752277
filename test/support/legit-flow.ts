import { createHash, randomBytes } from "node:crypto";
import { socksConnect } from "@zt/harness";

export interface SteadyFlow {
  /** Round trips that came back intact, and the ones that did not (with why). */
  readonly ok: () => number;
  readonly failures: string[];
  /** Stop after the round trip in progress; resolves with the counts. */
  stop(): Promise<{ ok: number; failures: string[] }>;
}

/**
 * A legitimate client that keeps going while an attack runs: one SOCKS5 connection after
 * another through `proxy`, each sending `size` random bytes, half-closing, and comparing
 * the SHA-256 of what the echo sent back.
 */
export function steadyFlow(proxy: { host: string; port: number }, localAddress: string, host: string, port: number, size = 256 * 1024): SteadyFlow {
  let ok = 0;
  let running = true;
  const failures: string[] = [];
  const once = (): Promise<void> => hashedRoundTrip(proxy, localAddress, host, port, size);
  const loop = (async () => {
    while (running) {
      try {
        await once();
        ok++;
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  })();
  return {
    ok: () => ok,
    failures,
    async stop() {
      running = false;
      await loop;
      return { ok, failures };
    },
  };
}

/** One SOCKS5 connection through `proxy`: `size` random bytes, half-close, the echo's SHA-256 compared; throws when it differs. */
export async function hashedRoundTrip(proxy: { host: string; port: number }, localAddress: string, host: string, port: number, size: number): Promise<void> {
  const sock = await socksConnect({ proxy, localAddress, host, port });
  const payload = randomBytes(size);
  const got: Buffer[] = [];
  sock.on("data", (c: Buffer) => got.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    sock.once("end", () => resolve());
    sock.once("error", reject);
    sock.setTimeout(20_000, () => reject(new Error("no echo within 20 s")));
  });
  sock.resume();
  sock.end(payload);
  try {
    await ended;
  } finally {
    sock.destroy();
  }
  const back = Buffer.concat(got);
  if (createHash("sha256").update(back).digest("hex") !== createHash("sha256").update(payload).digest("hex")) throw new Error(`echo differs (${back.length} of ${size} bytes)`);
}
