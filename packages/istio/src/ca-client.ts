/**
 * A node agent's client of Istio's CA (IstioCertificateService/CreateCertificate), as a
 * CertificateSource: one gRPC channel over TLS to CA_ADDRESS, trusting the mesh roots of
 * CA_ROOT_CA (re-read on every call; a changed file makes a new channel). Every call
 * re-reads the projected token (it is rotated by the kubelet), asks on behalf of the
 * workload (ImpersonatedIdentity) and checks the answer (ca-answer.ts) before anyone
 * uses it. Retrying is the caller's (the certificate manager's backoff).
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import { ZtError } from "@zt/errors";
import { splitPemCerts, verifyCsr, type CertificateSource, type SignedCertificate } from "@zt/identity";
import { checkCaAnswer } from "./ca-answer.js";
import { callMetadata, tlsNameOptions } from "./grpc-call.js";
import { CA_SERVICE } from "./grpc.js";
import type { CaRequest, CaResponse } from "./messages.js";

export interface IstioCaClientOptions {
  /** "host:port" of the CA (istiod's 15012). */
  readonly address: string;
  /** PEM file of the roots the CA's serving certificate and every answered chain must chain to. */
  readonly rootCaPath: string;
  /** The TLS name to check the CA's certificate against, instead of the address's host. */
  readonly altHostname?: string | undefined;
  /** The projected ServiceAccount token (audience istio-ca). */
  readonly tokenPath: string;
  readonly clusterId: string;
  /** Deadline of one call; default 10 s. */
  readonly timeoutMs?: number;
}

export interface IstioCaClient extends CertificateSource {
  readonly address: string;
  close(): void;
}

const METHOD = CA_SERVICE.CreateCertificate;

export function createIstioCaClient(o: IstioCaClientOptions): IstioCaClient {
  const timeoutMs = o.timeoutMs ?? 10_000;
  let channel: { rootText: string; roots: X509Certificate[]; client: grpc.Client } | undefined;
  let closed = false;

  async function readRoots(): Promise<NonNullable<typeof channel>> {
    let text: string;
    try {
      text = await readFile(o.rootCaPath, "utf8");
    } catch (err) {
      throw new ZtError("CA_ROOT_INVALID", `cannot read the CA's root certificates ${o.rootCaPath} (CA_ROOT_CA): ${(err as Error).message}`, { cause: err });
    }
    if (channel?.rootText === text) return channel;
    let roots: X509Certificate[];
    try {
      roots = splitPemCerts(text).map((p) => new X509Certificate(p));
    } catch (err) {
      throw new ZtError("CA_ROOT_INVALID", `${o.rootCaPath} (CA_ROOT_CA) holds a corrupt certificate: ${(err as Error).message}`, { cause: err });
    }
    if (roots.length === 0) throw new ZtError("CA_ROOT_INVALID", `${o.rootCaPath} (CA_ROOT_CA) contains no PEM certificate`);
    const client = new grpc.Client(o.address, grpc.credentials.createSsl(Buffer.from(text)), tlsNameOptions(o.altHostname));
    channel?.client.close();
    channel = { rootText: text, roots, client };
    return channel;
  }

  async function readToken(): Promise<string> {
    let token: string;
    try {
      token = (await readFile(o.tokenPath, "utf8")).trim();
    } catch (err) {
      throw new ZtError("CA_TOKEN_UNREADABLE", `cannot read the CA token ${o.tokenPath} (AUTH_TOKEN): ${(err as Error).message}`, { cause: err });
    }
    if (token === "") throw new ZtError("CA_TOKEN_UNREADABLE", `the CA token ${o.tokenPath} (AUTH_TOKEN) is empty`);
    return token;
  }

  function call(client: grpc.Client, request: CaRequest, metadata: grpc.Metadata): Promise<CaResponse> {
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(METHOD.path, METHOD.requestSerialize, METHOD.responseDeserialize, request, metadata, { deadline: Date.now() + timeoutMs }, (err, value) => {
        if (err) reject(statusError(o.address, err));
        else if (value) resolve(value);
        else reject(new ZtError("CERT_RESPONSE_INVALID", `the CA at ${o.address} answered nothing`));
      });
    });
  }

  return {
    address: o.address,
    async sign(csrPem: string, identity: string, ttlMs: number): Promise<SignedCertificate> {
      if (closed) throw new ZtError("CA_UNREACHABLE", `the client of the CA at ${o.address} is closed`);
      const [token, ch, csr] = await Promise.all([readToken(), readRoots(), verifyCsr(csrPem)]);
      const metadata = callMetadata(token, o.clusterId);
      const answer = await call(ch.client, { csr: csrPem, validity_duration: Math.ceil(ttlMs / 1000), metadata: { ImpersonatedIdentity: identity } }, metadata);
      const certChain = checkCaAnswer(o.address, identity, answer.cert_chain, csr.spki, ch.roots);
      return { certChain, roots: ch.roots.map((r) => r.toString()) };
    },
    close() {
      closed = true;
      channel?.client.close();
      channel = undefined;
    },
  };
}

/** A failed call as the operator reads it: refused (fix the token or the CA's rules), or not reached (it is retried). */
function statusError(address: string, err: grpc.ServiceError): ZtError {
  const name = grpc.status[err.code] ?? String(err.code);
  if (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED) {
    return new ZtError("CA_REQUEST_REFUSED", `the CA at ${address} refused the request (${name}): ${err.details}`, { cause: err });
  }
  return new ZtError("CA_UNREACHABLE", `the CA at ${address} did not answer (${name}): ${err.details}`, { cause: err });
}
