import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { ZtError } from "@zt/errors";
import { selfSignedServingCert } from "@zt/harness";
import { createKeyAndCsr, loadOrCreateCa, toWorkloadCertificate, type BuiltinCa } from "@zt/identity";
import { createIstioCaClient, type IstioCaClient } from "./ca-client.js";
import { CA_SERVICE } from "./grpc.js";
import type { CaRequest, CaResponse } from "./messages.js";

// A FAKE Istio CA: a real gRPC server over TLS on 127.0.0.1 serving CreateCertificate,
// signing with the project's built-in CA, or answering wrongly on purpose (`mode`).
const TD = "cluster.local";
const ID = `spiffe://${TD}/ns/default/sa/sleep`;
const OTHER = `spiffe://${TD}/ns/default/sa/other`;
type Mode = "good" | "other-identity" | "other-key" | "foreign-root" | "unauthenticated" | "ca-leaf" | "codesign-leaf";

let dir: string;
let ca: BuiltinCa;
let foreign: BuiltinCa;
let server: grpc.Server;
let port = 0;
let mode: Mode = "good";
const seen: { token: string | undefined; clusterId: string | undefined; request: CaRequest }[] = [];
let rootPath: string;
let tokenPath: string;
const serving = selfSignedServingCert(["127.0.0.1"]);
const clients: IstioCaClient[] = [];

function client(extra: { altHostname?: string; address?: string; tokenPath?: string } = {}): IstioCaClient {
  const c = createIstioCaClient({ address: extra.address ?? `127.0.0.1:${port}`, rootCaPath: rootPath, tokenPath: extra.tokenPath ?? tokenPath, clusterId: "Kubernetes", timeoutMs: 5000, ...(extra.altHostname ? { altHostname: extra.altHostname } : {}) });
  clients.push(c);
  return c;
}

async function answer(req: CaRequest): Promise<string[]> {
  const identity = String(req.metadata["ImpersonatedIdentity"]);
  if (mode === "other-identity") {
    const s = await ca.sign(req.csr, OTHER, req.validity_duration * 1000);
    return [...s.certChain, ...s.roots];
  }
  if (mode === "other-key") {
    const { csrPem } = await createKeyAndCsr(identity);
    const s = await ca.sign(csrPem, identity, req.validity_duration * 1000);
    return [...s.certChain, ...s.roots];
  }
  if (mode === "ca-leaf" || mode === "codesign-leaf") {
    // A leaf for the right identity and key, signed by the mesh CA, but with the wrong kind (openssl, from the CA's files).
    const ext = mode === "ca-leaf" ? "basicConstraints=critical,CA:TRUE\nextendedKeyUsage=serverAuth,clientAuth" : "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=codeSigning";
    await writeFile(join(dir, "req.csr"), req.csr);
    await writeFile(join(dir, "ext.cnf"), `${ext}\nsubjectAltName=critical,URI:${identity}\n`);
    execFileSync("openssl", ["x509", "-req", "-in", join(dir, "req.csr"), "-CA", join(dir, "ca", "ca-cert.pem"), "-CAkey", join(dir, "ca", "ca-key.pem"), "-set_serial", "7", "-days", "1", "-extfile", join(dir, "ext.cnf"), "-out", join(dir, "bad-leaf.pem")], { stdio: "ignore" });
    return [await readFile(join(dir, "bad-leaf.pem"), "utf8"), ...ca.roots()];
  }
  const signer = mode === "foreign-root" ? foreign : ca;
  const s = await signer.sign(req.csr, identity, req.validity_duration * 1000);
  return [...s.certChain, ...s.roots];
}

async function startFakeCa(at = 0): Promise<number> {
  server = new grpc.Server();
  server.addService(CA_SERVICE, {
    CreateCertificate: (call: grpc.ServerUnaryCall<CaRequest, CaResponse>, cb: grpc.sendUnaryData<CaResponse>) => {
      const auth = call.metadata.get("authorization")[0];
      seen.push({ token: typeof auth === "string" ? auth.replace(/^Bearer /, "") : undefined, clusterId: call.metadata.get("clusterid")[0] as string | undefined, request: call.request });
      if (mode === "unauthenticated") return cb({ code: grpc.status.UNAUTHENTICATED, details: "authenticate failure: token expired" });
      answer(call.request).then((cert_chain) => cb(null, { cert_chain }), (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message }));
    },
  });
  const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.cert), private_key: Buffer.from(serving.key) }]);
  return new Promise((resolve, reject) => server.bindAsync(`127.0.0.1:${at}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
}

async function issue(c: IstioCaClient, identity = ID) {
  const { keyPem, csrPem } = await createKeyAndCsr(identity);
  const signed = await c.sign(csrPem, identity, 3_600_000);
  return { signed, cert: toWorkloadCertificate(identity, keyPem, signed) };
}

async function refusal(p: Promise<unknown>): Promise<ZtError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ZtError);
  return err as ZtError;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zt-ca-client-"));
  ca = await loadOrCreateCa({ dir: join(dir, "ca"), trustDomain: TD });
  foreign = await loadOrCreateCa({ dir: join(dir, "foreign"), trustDomain: TD });
  // The root file holds the mesh root and the root of the CA's serving certificate.
  rootPath = join(dir, "root-cert.pem");
  await writeFile(rootPath, ca.roots().join("") + serving.cert);
  tokenPath = join(dir, "istio-token");
  await writeFile(tokenPath, "token-one\n");
  port = await startFakeCa();
});
afterAll(async () => {
  for (const c of clients) c.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  mode = "good";
  seen.length = 0;
});

describe("Istio CA client against a FAKE CA over gRPC+TLS on 127.0.0.1", () => {
  test("a good chain is accepted: leaf only in certChain (the root the CA appended dropped), roots from the root file, the request as Istio's ztunnel sends it", async () => {
    const { signed, cert } = await issue(client());
    expect(signed.certChain).toHaveLength(1);
    expect(new X509Certificate(signed.certChain[0]!).subjectAltName).toBe(`URI:${ID}`);
    expect(signed.roots).toHaveLength(2);
    expect(signed.roots[0]).toBe(new X509Certificate(ca.roots()[0]!).toString());
    expect(cert.identity).toBe(ID);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.token).toBe("token-one");
    expect(seen[0]!.clusterId).toBe("Kubernetes");
    expect(seen[0]!.request.metadata).toEqual({ ImpersonatedIdentity: ID });
    expect(seen[0]!.request.validity_duration).toBe(3600);
    expect(seen[0]!.request.csr).toContain("BEGIN CERTIFICATE REQUEST");
  });

  test("ALT_CA_HOSTNAME: the server's certificate is checked against that name instead", async () => {
    const { signed } = await issue(client({ altHostname: "localhost" }));
    expect(signed.certChain).toHaveLength(1);
    const err = await refusal(issue(client({ altHostname: "istiod.istio-system.svc" })));
    expect(err.code).toBe("CA_UNREACHABLE");
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  test("a chain for another identity is refused with CERT_RESPONSE_INVALID", async () => {
    mode = "other-identity";
    const err = await refusal(issue(client()));
    expect(err.code).toBe("CERT_RESPONSE_INVALID");
    expect(err.message).toContain(OTHER);
    expect(err.message).toContain(`wanted exactly ${ID}`);
  });

  test("a leaf for another key than the CSR's is refused", async () => {
    mode = "other-key";
    const err = await refusal(issue(client()));
    expect(err.code).toBe("CERT_RESPONSE_INVALID");
    expect(err.message).toContain("another public key");
  });

  test("a chain that is not rooted in the configured roots is refused", async () => {
    mode = "foreign-root";
    const err = await refusal(issue(client()));
    expect(err.code).toBe("CERT_RESPONSE_INVALID");
    expect(err.message).toContain("does not verify to any root");
  });

  test("a CA certificate as the leaf, or a leaf not for serverAuth and clientAuth, is refused", async () => {
    mode = "ca-leaf";
    const asCa = await refusal(issue(client()));
    expect([asCa.code, asCa.message]).toEqual(["CERT_RESPONSE_INVALID", expect.stringContaining("a CA certificate (basicConstraints CA:TRUE) as the leaf")]);
    mode = "codesign-leaf";
    const codeSigning = await refusal(issue(client()));
    expect([codeSigning.code, codeSigning.message]).toEqual(["CERT_RESPONSE_INVALID", expect.stringContaining("extended key usage (1.3.6.1.5.5.7.3.3) does not allow both serverAuth and clientAuth")]);
  });

  test("the token is re-read for every call", async () => {
    const c = client();
    await issue(c);
    await writeFile(tokenPath, "token-two");
    await issue(c);
    expect(seen.map((s) => s.token)).toEqual(["token-one", "token-two"]);
    await writeFile(tokenPath, "token-one\n");
  });

  test("a missing or empty token fails with CA_TOKEN_UNREADABLE naming the path, and nothing is sent", async () => {
    const missing = join(dir, "no-such-token");
    let err = await refusal(issue(client({ tokenPath: missing })));
    expect(err.code).toBe("CA_TOKEN_UNREADABLE");
    expect(err.message).toContain(missing);
    const empty = join(dir, "empty-token");
    await writeFile(empty, "\n");
    err = await refusal(issue(client({ tokenPath: empty })));
    expect(err.code).toBe("CA_TOKEN_UNREADABLE");
    expect(err.message).toContain(empty);
    expect(seen).toHaveLength(0);
  });

  test("UNAUTHENTICATED from the CA is CA_REQUEST_REFUSED with the CA's details", async () => {
    mode = "unauthenticated";
    const err = await refusal(issue(client()));
    expect(err.code).toBe("CA_REQUEST_REFUSED");
    expect(err.message).toContain("refused");
    expect(err.message).toContain("token expired");
  });

  test("a changed root file is used by the next call (a new channel)", async () => {
    const c = client();
    await issue(c);
    const saved = await readFile(rootPath, "utf8");
    await writeFile(rootPath, foreign.roots().join("") + serving.cert);
    mode = "foreign-root";
    const { signed } = await issue(c);
    expect(signed.roots[0]).toBe(new X509Certificate(foreign.roots()[0]!).toString());
    await writeFile(rootPath, saved);
  });

  test("a CA that is down is CA_UNREACHABLE, with the address", async () => {
    const other = new grpc.Server();
    const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.cert), private_key: Buffer.from(serving.key) }]);
    const freePort = await new Promise<number>((resolve, reject) => other.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? reject(err) : resolve(p))));
    await new Promise<void>((resolve) => other.tryShutdown(() => resolve()));
    const err = await refusal(issue(client({ address: `127.0.0.1:${freePort}` })));
    expect(err.code).toBe("CA_UNREACHABLE");
    expect(err.message).toContain(`127.0.0.1:${freePort}`);
  });
});
