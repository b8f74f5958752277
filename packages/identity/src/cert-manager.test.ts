import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadOrCreateCa, type BuiltinCa } from "./ca.js";
import { backoffMs, createCertManager, rotationTime, type CertEvent } from "./cert-manager.js";
import { clientConnectOptions } from "./tls.js";
import { connect, roundTrip, startEchoServer, tempDir } from "./test-support/helpers.js";
import type { CertificateSource } from "./types.js";

const TD = "cluster.local";
const A = `spiffe://${TD}/ns/a/sa/a`;
const B = `spiffe://${TD}/ns/b/sa/b`;

let ca: BuiltinCa;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const d = await tempDir();
  cleanup = d.cleanup;
  ca = await loadOrCreateCa({ dir: d.path, trustDomain: TD });
});
afterAll(() => cleanup());

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}

/** Wraps the CA: counts calls, and fails while `failing` is set. */
function flakySource(): CertificateSource & { calls: number; failing: boolean } {
  const s = {
    calls: 0,
    failing: false,
    async sign(csr: string, id: string, ttl: number) {
      s.calls += 1;
      if (s.failing) throw new Error("CA unreachable");
      return ca.sign(csr, id, ttl);
    },
  };
  return s;
}

describe("cert manager", () => {
  it("issues wanted identities, shares concurrent fetches, reports readiness", async () => {
    const source = flakySource();
    const mgr = createCertManager({ source, ttlMs: 3_600_000 });
    try {
      expect(mgr.ready()).toBe(true);
      mgr.setWanted([A]);
      expect(mgr.ready()).toBe(false);
      expect(mgr.pending()).toEqual([A]);
      expect(mgr.dump()).toEqual([{ identity: A, state: "Initializing", status: "pending", certChain: [], rootCerts: [] }]);
      const [c1, c2, c3] = await Promise.all([mgr.fetch(A), mgr.fetch(A), mgr.fetch(A)]);
      expect(c1).toBe(c2);
      expect(c2).toBe(c3);
      expect(source.calls).toBe(1);
      expect(mgr.ready()).toBe(true);
      expect(mgr.get(A)).toBe(c1);
      expect(c1.serialNumber).toMatch(/^[0-9a-f]{32}$/);
      expect(c1.notAfter.getTime() - c1.notBefore.getTime()).toBeGreaterThanOrEqual(3_600_000 + 60_000 - 1000);

      // An identity nobody asked for ahead of time is issued on demand.
      const b = await mgr.fetch(B);
      expect(b.identity).toBe(B);
      expect(source.calls).toBe(2);
      // setWanted forgets what is no longer wanted.
      mgr.setWanted([B]);
      expect(mgr.get(A)).toBeUndefined();
      expect(mgr.get(B)).toBe(b);
      expect(source.calls).toBe(2);
    } finally {
      mgr.close();
    }
  });

  it("rotates before half-life without disturbing an established connection", async () => {
    const events: CertEvent[] = [];
    const mgr = createCertManager({ source: ca, ttlMs: 3_000, onEvent: (e) => events.push(e) });
    mgr.setWanted([A, B]);
    const server = await startEchoServer(() => mgr.get(A)!, TD);
    try {
      const [first, clientCert] = await Promise.all([mgr.fetch(A), mgr.fetch(B)]);
      const sock = await connect(server.port, clientConnectOptions(clientCert, [A]));
      expect(await roundTrip(sock, "before")).toBe("before");

      await until(() => events.some((e) => e.type === "rotated" && e.identity === A), 3_000);
      const second = mgr.get(A)!;
      expect(second.serialNumber).not.toBe(first.serialNumber);
      expect(second.keyPem).not.toBe(first.keyPem);
      // Rotation happened before the old certificate expired.
      expect(Date.now()).toBeLessThan(first.notAfter.getTime());

      // The connection made with the old certificates still carries data...
      expect(await roundTrip(sock, "after")).toBe("after");
      sock.destroy();
      // ...and new connections use the new ones.
      const fresh = await connect(server.port, clientConnectOptions(mgr.get(B)!, [A]));
      expect(fresh.getPeerCertificate().serialNumber.toLowerCase()).toBe(second.serialNumber);
      expect(await roundTrip(fresh, "new")).toBe("new");
      fresh.destroy();

      expect(events.filter((e) => e.type === "issued").map((e) => e.identity).sort()).toEqual([A, B]);
      const dump = mgr.dump();
      expect(dump.map((d) => d.identity)).toEqual([A, B]);
      const a = dump[0]!;
      expect(a.state).toBe("Available");
      expect(a.error).toBeUndefined();
      expect(a.certChain).toHaveLength(1);
      expect(a.certChain[0]).toEqual({
        serialNumber: BigInt(`0x${second.serialNumber}`).toString(10),
        validFrom: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        expirationTime: second.notAfter.toISOString().replace(/\.\d{3}Z$/, "Z"),
      });
      expect(a.certChain[0]?.pem).toBeUndefined();
      expect(a.rootCerts).toHaveLength(1);
    } finally {
      mgr.close();
      await server.close();
    }
  });

  it("keeps the old certificate and shows the error while rotation fails, then recovers", async () => {
    const source = flakySource();
    const events: CertEvent[] = [];
    const mgr = createCertManager({ source, ttlMs: 4_000, onEvent: (e) => events.push(e) });
    try {
      mgr.setWanted([A]);
      const first = await mgr.fetch(A);
      source.failing = true;
      await until(() => events.some((e) => e.type === "failed"), 3_000);
      expect(mgr.get(A)).toBe(first);
      expect(await mgr.fetch(A)).toBe(first);
      expect(mgr.ready()).toBe(true);
      expect(mgr.dump()[0]).toMatchObject({ state: "Available", status: "available", error: expect.stringContaining("CA unreachable"), lastError: { message: expect.stringContaining("CA unreachable") } });
      expect(events.find((e) => e.type === "failed")?.error).toMatchObject({ code: "CERT_ISSUE_FAILED" });
      source.failing = false;
      await until(() => events.some((e) => e.type === "rotated"), 2_500); // retried after 1 s
      expect(mgr.get(A)).not.toBe(first);
      expect(mgr.dump()[0]?.error).toBeUndefined();
    } finally {
      mgr.close();
    }
  });

  it("reports Unavailable and rejects fetch when the first issuance fails", async () => {
    const source = flakySource();
    source.failing = true;
    const mgr = createCertManager({ source, ttlMs: 60_000 });
    try {
      await expect(mgr.fetch(A)).rejects.toMatchObject({ code: "CERT_ISSUE_FAILED" });
      expect(mgr.dump()[0]).toMatchObject({ identity: A, state: "Unavailable", status: "failed", error: expect.stringContaining("CA unreachable") });
      expect(mgr.dump()[0]?.lastError).toMatchObject({ code: "CERT_ISSUE_FAILED", message: expect.stringContaining("CA unreachable"), at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/) });
      // A retry within a second reuses the failure instead of hammering the CA.
      await expect(mgr.fetch(A)).rejects.toMatchObject({ code: "CERT_ISSUE_FAILED" });
      expect(source.calls).toBe(1);
      // The CA's own refusals keep their code.
      source.failing = false;
      await expect(mgr.fetch("spiffe://elsewhere/ns/a/sa/a")).rejects.toMatchObject({ code: "CA_IDENTITY_REJECTED" });
    } finally {
      mgr.close();
    }
  });

  it("rotationTime: 50 % of the lifetime for a draw of 0, towards 40 % as it nears 1, never outside", () => {
    expect(rotationTime(1_000, 101_000, 0)).toBe(51_000);
    expect(rotationTime(1_000, 101_000, 0.5)).toBe(46_000);
    expect(rotationTime(1_000, 101_000, 0.999999)).toBeCloseTo(41_000, 0);
    expect(rotationTime(1_000, 101_000, 1)).toBe(41_000);
    expect(rotationTime(1_000, 101_000, -3)).toBe(51_000);
  });

  it("spreads the rotations of certificates issued together over the window, each at its own time (injected random, fake clock)", async () => {
    const T0 = Date.parse("2031-01-01T00:00:00Z");
    vi.useFakeTimers({ toFake: ["Date", "setTimeout", "clearTimeout"], now: T0 });
    const N = 50;
    const TTL = 3_600_000;
    const draws = Array.from({ length: N }, (_, i) => i / N); // then the same again for the next generation
    let draw = 0;
    const source = flakySource();
    const events: CertEvent[] = [];
    const mgr = createCertManager({ source, ttlMs: TTL, random: () => draws[draw++ % N]!, onEvent: (e) => events.push(e) });
    /** Lets the issuance already under way (real key generation and signing, in the threadpool) finish. */
    const settle = async (done: () => boolean): Promise<void> => {
      const deadline = performance.now() + 10_000;
      while (!done() && performance.now() < deadline) await new Promise((r) => setImmediate(r));
    };
    const rotations = (): number => events.filter((e) => e.type === "rotated").length;
    try {
      const ids = Array.from({ length: N }, (_, i) => `spiffe://${TD}/ns/jitter/sa/s${i}`);
      mgr.setWanted(ids);
      await Promise.all(ids.map((id) => mgr.fetch(id)));
      const planned = events.filter((e) => e.type === "issued").map((e) => e.rotatesAt!.getTime()).sort((a, b) => a - b);
      // The clock stood still: every certificate lives from T0 to T0 + TTL, and draw i puts
      // its rotation at T0 + TTL × (50 % − 10 % × i/N): 7.2 s apart, 40.2 % ... 50 %.
      expect(planned).toHaveLength(N);
      planned.forEach((at, k) => expect(at).toBeCloseTo(T0 + TTL * (0.5 - 0.1 * ((N - 1 - k) / N)), 3));
      expect(new Set(planned.map((at) => Math.floor(at / 1000))).size).toBe(N); // no two in one second
      expect(planned[0]! - T0).toBeGreaterThanOrEqual(0.4 * TTL);
      expect(planned.at(-1)! - T0).toBe(0.5 * TTL);

      // Walk the clock through the window: nothing rotates early, and each one at its time.
      for (const [k, at] of planned.entries()) {
        await vi.advanceTimersByTimeAsync(Math.ceil(at) - 1 - Date.now());
        expect(rotations()).toBe(k);
        await vi.advanceTimersByTimeAsync(1);
        await settle(() => rotations() === k + 1);
        expect(rotations()).toBe(k + 1);
      }
      expect(source.calls).toBe(2 * N);
      // The next generation is drawn afresh, from its own rotation time.
      const next = events.filter((e) => e.type === "rotated").map((e) => e.rotatesAt!.getTime());
      expect(Math.min(...next)).toBeGreaterThanOrEqual(planned[0]! + 0.4 * TTL);
    } finally {
      mgr.close();
      vi.useRealTimers();
    }
  });

  it("backs off exponentially from 1 s to 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(backoffMs)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it("close() leaves no timers behind", async () => {
    const created: NodeJS.Timeout[] = [];
    const real = globalThis.setTimeout;
    const spy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((fn: () => void, ms?: number) => {
      const t = real(fn, ms);
      created.push(t);
      return t;
    }) as typeof setTimeout);
    const mgr = createCertManager({ source: ca, ttlMs: 3_600_000 });
    try {
      mgr.setWanted([A, B]);
      await Promise.all([mgr.fetch(A), mgr.fetch(B)]);
    } finally {
      spy.mockRestore();
    }
    const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    // Our timers are unref'ed, so they do not show up until we ref() them.
    const baseline = timeouts();
    for (const t of created) t.ref();
    expect(timeouts()).toBeGreaterThanOrEqual(baseline + 2); // one rotation timer per identity
    for (const t of created) t.unref();
    mgr.close();
    for (const t of created) t.ref();
    expect(timeouts()).toBe(baseline);
    await expect(mgr.fetch(A)).rejects.toMatchObject({ code: "CERT_MANAGER_CLOSED" });
  });
});
