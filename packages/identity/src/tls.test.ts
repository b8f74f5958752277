import { afterAll, beforeAll, describe, expect, it } from "vitest";
import tls from "node:tls";
import { loadOrCreateCa, type BuiltinCa } from "./ca.js";
import { checkClientIdentity, clientConnectOptions, peerIdentity, uriSans } from "./tls.js";
import { connect, issue, outcome, roundTrip, startEchoServer, tempDir, type LoopbackServer } from "./test-support/helpers.js";
import type { WorkloadCertificate } from "./workload-cert.js";

const TD = "cluster.local";
const SERVER_ID = `spiffe://${TD}/ns/server/sa/srv`;
const CLIENT_ID = `spiffe://${TD}/ns/client/sa/cli`;

let ca: BuiltinCa;
let serverCert: WorkloadCertificate;
let clientCert: WorkloadCertificate;
let server: LoopbackServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const dir = await tempDir();
  cleanups.push(dir.cleanup);
  ca = await loadOrCreateCa({ dir: dir.path, trustDomain: TD });
  [serverCert, clientCert] = await Promise.all([issue(ca, SERVER_ID), issue(ca, CLIENT_ID)]);
  server = await startEchoServer(() => serverCert, TD);
});

afterAll(async () => {
  await server.close();
  for (const c of cleanups) await c();
});

describe("HBONE mTLS", () => {
  it("handshakes with TLS 1.3 + h2 and both sides see each other's identity", async () => {
    const sock = await connect(server.port, clientConnectOptions(clientCert, [SERVER_ID]));
    expect(sock.alpnProtocol).toBe("h2");
    expect(sock.getProtocol()).toBe("TLSv1.3");
    expect(sock.authorized).toBe(true);
    expect(peerIdentity(sock)).toEqual({ id: SERVER_ID, trustDomain: TD, namespace: "server", serviceAccount: "srv" });
    expect(await roundTrip(sock, "ping")).toBe("ping");
    const inbound = server.accepted.at(-1)!;
    expect(inbound.alpnProtocol).toBe("h2");
    expect(peerIdentity(inbound)?.id).toBe(CLIENT_ID);
    expect(checkClientIdentity(inbound, TD)).toBeUndefined();
    sock.destroy();
  });

  it("refuses a TLS 1.2-only client", async () => {
    const opts: tls.ConnectionOptions = {
      key: clientCert.keyPem,
      cert: clientCert.certChain.join("\n"),
      ca: clientCert.roots,
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      ALPNProtocols: ["h2"],
      checkServerIdentity: () => undefined,
    };
    await expect(connect(server.port, opts)).rejects.toThrow(/protocol version|unsupported protocol/i);
  });

  it("refuses a client certificate from a different CA", async () => {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const otherCa = await loadOrCreateCa({ dir: dir.path, trustDomain: TD });
    const foreign = await issue(otherCa, CLIENT_ID);
    // The client trusts our roots (so it accepts the server), but presents a foreign cert.
    const before = server.accepted.length;
    const errorsBefore = server.errors.length;
    const opts = { ...clientConnectOptions(foreign, [SERVER_ID]), secureContext: undefined, ...contextOpts(foreign, ca.roots()) };
    // TLS 1.3: the client may finish its side of the handshake before the server refuses.
    const result = await connect(server.port, opts).then(outcome, (err: Error) => err);
    expect(result === "closed" || result instanceof Error).toBe(true);
    expect(server.accepted.length).toBe(before);
    expect(server.errors.slice(errorsBefore)).toContainEqual(expect.objectContaining({ code: "CLIENT_CERT_UNTRUSTED" }));
  });

  it("refuses a client without a certificate", async () => {
    const before = server.accepted.length;
    // OpenSSL itself refuses (certificate required), so the server never sees 'secure'.
    const opts = { ca: ca.roots(), ALPNProtocols: ["h2"], checkServerIdentity: () => undefined, minVersion: "TLSv1.3" as const };
    const result = await connect(server.port, opts).then(outcome, (err: Error) => err);
    expect(result).toBeInstanceOf(Error);
    expect(server.accepted.length).toBe(before);
  });

  it("fails with IDENTITY_MISMATCH when the server presents another identity", async () => {
    const err = await connect(server.port, clientConnectOptions(clientCert, [`spiffe://${TD}/ns/server/sa/other`])).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "IDENTITY_MISMATCH" });
    expect(String((err as Error).message)).toContain(SERVER_ID);
  });

  it("reports a foreign trust domain via checkClientIdentity", async () => {
    // A CA whose trust domain differs, but whose root our server trusts.
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const otherTd = "other.domain";
    const otherCa = await loadOrCreateCa({ dir: dir.path, trustDomain: otherTd });
    const foreignId = `spiffe://${otherTd}/ns/client/sa/cli`;
    const foreign = await issue(otherCa, foreignId);
    const trustsBoth = (): WorkloadCertificate => ({
      ...serverCert,
      secureContext: tls.createSecureContext(contextOpts(serverCert, [...ca.roots(), ...otherCa.roots()])),
    });
    const clientOpts = { ...clientConnectOptions(foreign, [SERVER_ID]), secureContext: undefined, ...contextOpts(foreign, ca.roots()) };
    const strict = await startEchoServer(trustsBoth, TD);
    const lenient = await startEchoServer(trustsBoth, otherTd);
    try {
      const refused = await connect(strict.port, clientOpts).then(outcome, (err: Error) => err);
      expect(refused === "closed" || refused instanceof Error).toBe(true);
      expect(strict.accepted).toHaveLength(0);
      expect(strict.errors).toContainEqual(expect.objectContaining({ code: "TRUST_DOMAIN_MISMATCH" }));
      expect(strict.errors[0]?.message).toContain(otherTd);
      // The same client is fine where its trust domain is the local one.
      const sock = await connect(lenient.port, clientOpts);
      expect(await roundTrip(sock, "x")).toBe("x");
      expect(peerIdentity(lenient.accepted[0]!)?.id).toBe(foreignId);
      sock.destroy();
    } finally {
      await strict.close();
      await lenient.close();
    }
  });
});

describe("uriSans", () => {
  it("extracts URI entries, including node's quoted form", () => {
    expect(uriSans('DNS:a.example, URI:spiffe://td/ns/a/sa/b, URI:"spiffe://td/ns/x,y/sa/z"')).toEqual([
      "spiffe://td/ns/a/sa/b",
      "spiffe://td/ns/x,y/sa/z",
    ]);
    expect(uriSans(undefined)).toEqual([]);
  });
});

function contextOpts(cert: WorkloadCertificate, roots: string[]): tls.SecureContextOptions {
  return { key: cert.keyPem, cert: cert.certChain.join("\n"), ca: roots, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" };
}
