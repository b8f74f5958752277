/**
 * Certificates signed per second by zt-controller's CA (not a test; asserts nothing):
 * node agents' requests through the real Istio CA client (createIstioCaClient: gRPC over
 * TLS, bearer token) to the CA server (createCaServer: a TokenReview per request to the
 * FAKE API server on loopback, the node check over the pods its discovery holds, then the
 * built-in CA's signature), against the same built-in CA signing in-process as the
 * baseline. CSRs are made before the clock starts (an agent makes its own key anyway).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { cachedTokenReviewer, createCaServer, createPodIndex, createTokenReviewer, type TokenReviewer } from "@zt/controller";
import { fakeKubeconfig, startFakeKubeApi } from "@zt/harness";
import { createKeyAndCsr, loadOrCreateCa } from "@zt/identity";
import { CA_SERVICE, createIstioCaClient } from "@zt/istio";
import { KubeConfig, startKubeDiscovery } from "@zt/kube";
import { percentile, writeResultsSection } from "./util.js";

const QUICK = process.env["BENCH_QUICK"] === "1";
const REQUESTS = QUICK ? 100 : 1000;
const CONCURRENCY = 16;
const PODS = 200;
const TD = "cluster.local";

async function drive(n: number, concurrency: number, one: (i: number) => Promise<unknown>): Promise<{ perSec: number; p50: number; p99: number; cpuMs: number }> {
  const lat = new Float64Array(n);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const s = performance.now();
        await one(i);
        lat[i] = performance.now() - s;
      }
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { perSec: (n / ms) * 1000, p50: percentile(lat, n, 0.5), p99: percentile(lat, n, 0.99), cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "zt-ca-bench-"));
  const api = await startFakeKubeApi({ host: "127.0.0.1", port: 0, tokens: { ctl: { user: "system:serviceaccount:istio-system:zt-controller", allow: () => true } } });
  const kc = new KubeConfig();
  kc.loadFromString(fakeKubeconfig(api.url, "ctl", api.ca));
  const node = api.store.apply("Pod", { metadata: { name: "ztunnel-1", namespace: "istio-system" }, spec: { nodeName: "node-1", serviceAccountName: "ztunnel" }, status: { phase: "Running" } });
  for (let i = 0; i < PODS; i++) api.store.apply("Pod", { metadata: { name: `p${i}`, namespace: "bench" }, spec: { nodeName: "node-1", serviceAccountName: `sa-${i}` }, status: { phase: "Running", podIP: `10.1.${i >> 8}.${i & 255}` } });
  const discovery = startKubeDiscovery({ kc, names: { clusterId: "Kubernetes", trustDomain: TD, domainSuffix: "cluster.local", rootNamespace: "istio-system" }, onUpdate: () => {} });
  while (!discovery.synced()) await new Promise((r) => setTimeout(r, 50));
  const ca = await loadOrCreateCa({ dir: path.join(dir, "ca"), trustDomain: TD });
  // First a TokenReview per request, then through the cache the controller runs it with.
  const plain = createTokenReviewer(kc);
  let reviewer: TokenReviewer = plain;
  const caServer = createCaServer({ signer: ca, trustDomain: TD, tokens: { review: (t) => reviewer.review(t) }, pods: createPodIndex(() => discovery.objects("pods")), trustedNodeAccounts: ["istio-system/ztunnel"], maxTtlMs: 24 * 3600_000, logger: pino({ level: "silent" }) });
  const serving = await ca.issueServing({ dns: ["zt-controller.istio-system.svc"], ips: ["127.0.0.1"] }, 3600_000);
  const server = new grpc.Server();
  server.addService(CA_SERVICE, caServer.implementation);
  const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.certChain.join("")), private_key: Buffer.from(serving.keyPem) }]), (e: Error | null, p: number) => (e ? rej(e) : res(p))));
  const rootPath = path.join(dir, "root.pem");
  writeFileSync(rootPath, ca.roots().join(""));
  const tokenPath = path.join(dir, "token");
  writeFileSync(tokenPath, api.serviceAccountTokens.mint({ namespace: "istio-system", serviceAccount: "ztunnel", pod: { name: "ztunnel-1", uid: node.metadata.uid! } }));
  const client = createIstioCaClient({ address: `127.0.0.1:${port}`, rootCaPath: rootPath, tokenPath, clusterId: "Kubernetes" });

  const ids = Array.from({ length: REQUESTS }, (_, i) => `spiffe://${TD}/ns/bench/sa/sa-${i % PODS}`);
  const csrs = await Promise.all(ids.map((id) => createKeyAndCsr(id)));
  await client.sign(csrs[0]!.csrPem, ids[0]!, 3600_000); // the connection, once
  const local = await drive(REQUESTS, CONCURRENCY, (i) => ca.sign(csrs[i]!.csrPem, ids[i]!, 3600_000));
  // Two rounds of each, alternating (so that warming up favours neither); the faster round of each is kept.
  const rounds: { remote: Awaited<ReturnType<typeof drive>>[]; cached: Awaited<ReturnType<typeof drive>>[] } = { remote: [], cached: [] };
  const reviews = { remote: 0, cached: 0 };
  const counted = (): number => api.requests.filter((r) => r.startsWith("POST /apis/authentication.k8s.io/v1/tokenreviews")).length;
  for (let r = 0; r < 2; r++) {
    reviewer = plain;
    let n0 = counted();
    rounds.remote.push(await drive(REQUESTS, CONCURRENCY, (i) => client.sign(csrs[i]!.csrPem, ids[i]!, 3600_000)));
    reviews.remote = counted() - n0;
    reviewer = cachedTokenReviewer(plain);
    n0 = counted();
    rounds.cached.push(await drive(REQUESTS, CONCURRENCY, (i) => client.sign(csrs[i]!.csrPem, ids[i]!, 3600_000)));
    reviews.cached = counted() - n0;
  }
  const best = (xs: Awaited<ReturnType<typeof drive>>[]): Awaited<ReturnType<typeof drive>> => xs.reduce((a, b) => (b.perSec > a.perSec ? b : a));
  const remote = best(rounds.remote);
  const cached = best(rounds.cached);
  client.close();
  server.forceShutdown();
  discovery.close();
  await api.close();
  rmSync(dir, { recursive: true, force: true });

  const f = (x: number): string => x.toFixed(1);
  const section = [
    "<!-- ca-sign:begin -->",
    "## zt-controller: certificates signed per second",
    "",
    "```",
    "bash bench/ca-sign.sh",
    "```",
    "",
    `- Date: ${new Date().toISOString()}; ${os.cpus().length} CPUs; Node ${process.version}${QUICK ? "; QUICK" : ""}`,
    `- ${REQUESTS} requests, ${CONCURRENCY} at a time (through the controller: the faster of 2 rounds, the two ways alternating), for ${PODS} identities with a pod on the caller's node; ECDSA P-256 keys, CSRs made beforehand;`,
    "  everything in one process on loopback (client, CA server, FAKE API server), so the CPU column is all of it.",
    "- Baseline: the built-in CA's `sign` in-process (the CSR check and the signature). Through the controller: the Istio CA client",
    "  (gRPC over TLS, the token re-read per call, the answer's chain checked) and the CA server (the node check), with a TokenReview",
    "  per request, then with the TokenReview cache zt-controller runs (one review per token for 10 s; the agent's one token here).",
    "",
    "| path | certificates/s | p50 (ms) | p99 (ms) | CPU per certificate (ms) | TokenReviews sent |",
    "|---|---:|---:|---:|---:|---:|",
    `| built-in CA, in-process | ${f(local.perSec)} | ${f(local.p50)} | ${f(local.p99)} | ${(local.cpuMs / REQUESTS).toFixed(2)} | - |`,
    `| agent -> zt-controller, a TokenReview per request | ${f(remote.perSec)} | ${f(remote.p50)} | ${f(remote.p99)} | ${(remote.cpuMs / REQUESTS).toFixed(2)} | ${reviews.remote} |`,
    `| agent -> zt-controller, TokenReview cached (as it runs) | ${f(cached.perSec)} | ${f(cached.p50)} | ${f(cached.p99)} | ${(cached.cpuMs / REQUESTS).toFixed(2)} | ${reviews.cached} |`,
    `| ratio (controller as it runs / in-process) | ${(cached.perSec / local.perSec).toFixed(2)}x | | | | |`,
    "",
    "<!-- ca-sign:end -->",
  ].join("\n");
  process.stdout.write(`${section}\nwrote ${writeResultsSection("ca-sign", section, QUICK)}\n`);
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
