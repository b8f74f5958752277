import { execFile } from "node:child_process";
import type net from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SocksRefused, socksConnect, startEcho, startLoopbackMesh, ZTUNNEL_BIN, type AgentProcess, type LoopbackMesh } from "@zt/harness";
import type { Explanation } from "@zt/proxy";
import { workloadDir } from "./support/mesh-file.js";
import { until } from "./support/metrics.js";

// /debug/explain against the data path: two real agents (node-a on 127.99.1.1, node-b on
// 127.99.2.1; node-b with OUTBOUND_TRAFFIC_POLICY=REGISTRY_ONLY). For every case of the
// authorization table and every outbound route, explain is asked first, then the same
// connection is made through SOCKS5 from the source's address: explain's verdict must be
// what happened, and its refusal code the one on the connection's access-log line.
const NET = 99;
const A = `127.${NET}.1`;
const B = `127.${NET}.2`;
const SLEEP = "spiffe://cluster.local/ns/default/sa/sleep";
const files = workloadDir();
const meshFile = files.write(
  "mesh.yaml",
  `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${A}.10"], protocol: HBONE, node: node-a}
- {name: other, namespace: default, serviceAccount: other, workloadIps: ["${A}.13"], protocol: HBONE, node: node-a}
- {name: outsider, namespace: default, workloadIps: ["${A}.12"], protocol: TCP, node: node-a}
- {name: echo, namespace: default, serviceAccount: echo, workloadIps: ["${B}.10"], protocol: HBONE, node: node-b, labels: {app: echo}, services: {"default/echo.default.svc.cluster.local": {80: 8080}}}
- {name: echo-sick, namespace: default, serviceAccount: echo, workloadIps: ["${B}.11"], protocol: HBONE, node: node-b, status: Unhealthy, services: {"default/echo.default.svc.cluster.local": {80: 8080}}}
- {name: guarded, namespace: default, serviceAccount: guarded, workloadIps: ["${B}.12"], protocol: HBONE, node: node-b, labels: {app: guarded}}
- {name: legacy, namespace: legacy, workloadIps: ["${B}.20"], protocol: TCP, node: node-b, services: {"legacy/legacy.legacy.svc.cluster.local": {80: 8080}}}
services:
- {name: echo, namespace: default, vips: ["/127.${NET}.3.1"], ports: {80: 8080}}
- {name: empty, namespace: default, vips: ["/127.${NET}.3.2"], ports: {80: 8080}}
- {name: legacy, namespace: legacy, vips: ["/127.${NET}.3.3"], ports: {80: 8080}}
policies:
- {name: deny-9999, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [9999]}]]]}
- {name: allow-sleep, namespace: default, scope: WorkloadSelector, selector: {app: guarded}, action: Allow, rules: [[[{destinationPorts: [9000]}]], [[{principals: ["cluster.local/ns/default/sa/sleep"]}]]]}
- {name: dry-deny-8082, namespace: default, scope: WorkloadSelector, selector: {app: echo}, action: Deny, dryRun: true, rules: [[[{destinationPorts: [8082]}]]]}
`,
);
let mesh: LoopbackMesh;
const echoes: net.Server[] = [];
let nextPort = 41_000;

beforeAll(async () => {
  mesh = await startLoopbackMesh({ net: NET, nodes: ["node-a", "node-b"], workloadsFile: meshFile, envs: [undefined, { OUTBOUND_TRAFFIC_POLICY: "REGISTRY_ONLY" }] });
  for (const [ip, port] of [[`${B}.10`, 8080], [`${B}.10`, 8082], [`${B}.12`, 8080], [`${B}.20`, 8080], [`127.${NET}.4.1`, 8080]] as const) echoes.push(await startEcho(ip, port));
}, 60_000);
afterAll(async () => {
  for (const e of echoes) e.close();
  await mesh?.stop();
});

async function explainOn(agent: AgentProcess, query: Record<string, string>): Promise<Explanation> {
  const r = await agent.get("admin", `/debug/explain?${new URLSearchParams(query)}`);
  expect(r.status, r.body).toBe(200);
  return JSON.parse(r.body) as Explanation;
}

/** Connect through `via`'s SOCKS5 from `src`; "allow" once an echo came back, else the refusal's code from the access log. */
async function connect(via: number, src: string, dst: string): Promise<{ outcome: "allow" } | { outcome: "refused"; code: string; line: Record<string, unknown> }> {
  const [ip, port] = [dst.slice(0, dst.lastIndexOf(":")), Number(dst.slice(dst.lastIndexOf(":") + 1))];
  const localPort = nextPort++;
  try {
    const s = await socksConnect({ proxy: { host: mesh.host(via), port: 15080 }, localAddress: src, localPort, host: ip, port });
    const back = new Promise<string>((resolve) => s.once("data", (d: Buffer) => resolve(d.toString())));
    s.resume();
    s.write("ping");
    expect(await back).toBe("ping");
    s.destroy();
    return { outcome: "allow" };
  } catch (err) {
    if (!(err instanceof SocksRefused)) throw err;
    const from = `${src}:${localPort}`;
    const line = await until(
      `the access-log line of the refused connection from ${from}`,
      () => mesh.agents.flatMap((a) => a.accessLogs()).find((l) => l["src.addr"] === from && l["error"] !== undefined),
      (l) => l !== undefined,
      10_000,
    );
    return { outcome: "refused", code: String(line!["error"]).split(":")[0]!, line: line! };
  }
}

/** Explain from the agent at `via`, then make the connection there: they must agree. */
async function agree(via: number, src: string, dst: string): Promise<Explanation> {
  const e = await explainOn(mesh.agents[via]!, { src, dst });
  const real = await connect(via, src, dst);
  if (e.verdict === "allow") expect(real.outcome, JSON.stringify(real)).toBe("allow");
  else {
    expect(real.outcome).toBe("refused");
    const code = (e.inbound?.refused ?? e.outbound?.refused)?.code;
    expect(real.outcome === "refused" && real.code).toBe(code);
  }
  return e;
}

describe("explain agrees with the data path: authorization", () => {
  test("no ALLOW policy on the destination: allowed (allowed-no-policy), over HBONE to the pod with its identity expected", async () => {
    const e = await agree(0, `${A}.10`, `${B}.10:8080`);
    expect(e.verdict).toBe("allow");
    expect(e.outbound).toMatchObject({ node: "node-a", kind: "hbone", target: `${B}.10:8080`, hbone: { peer: `${B}.10:15008`, expectedIdentities: ["spiffe://cluster.local/ns/default/sa/echo"] } });
    expect(e.inbound).toMatchObject({ node: "node-b", listener: "hbone", source: { address: `${A}.10`, identity: SLEEP }, decision: { allow: true, reason: "allowed-no-policy" } });
    expect(e.inbound?.policies.map((p) => [p.policy, p.rule])).toEqual([["default/deny-9999", -1], ["default/dry-deny-8082", -1]]);
  });

  test("a matching DENY: denied-by-policy, naming the policy and its rule", async () => {
    const e = await agree(0, `${A}.10`, `${B}.10:9999`);
    expect(e.verdict).toBe("deny");
    expect(e.inbound?.decision).toMatchObject({ allow: false, policy: "default/deny-9999", reason: "denied-by-policy" });
    expect(e.inbound?.policies.find((p) => p.policy === "default/deny-9999")?.rule).toBe(0);
  });

  test("an ALLOW that matches the principal (its second rule): allowed-by-policy", async () => {
    const e = await agree(0, `${A}.10`, `${B}.12:8080`);
    expect(e.inbound?.decision).toMatchObject({ allow: true, policy: "default/allow-sleep", reason: "allowed-by-policy" });
    expect(e.inbound?.policies.find((p) => p.policy === "default/allow-sleep")?.rule).toBe(1);
  });

  test("an ALLOW that matches nothing of another identity: denied-no-allow-match", async () => {
    const e = await agree(0, `${A}.13`, `${B}.12:8080`);
    expect(e.verdict).toBe("deny");
    expect(e.inbound?.decision).toMatchObject({ allow: false, reason: "denied-no-allow-match" });
    expect(e.inbound?.policies.find((p) => p.policy === "default/allow-sleep")?.rule).toBe(-1);
  });

  test("a dry-run DENY that matches: allowed, and what it would have decided is said", async () => {
    const e = await agree(0, `${A}.10`, `${B}.10:8082`);
    expect(e.verdict).toBe("allow");
    expect(e.inbound?.decision).toMatchObject({ allow: true, dryRun: ["default/dry-deny-8082"], dryRunAllow: false });
    expect(e.summary).toMatch(/dry-run default\/dry-deny-8082 would deny it/);
    const line = await until("the dry-run line", () => mesh.agents[1]!.accessLogs().find((l) => l["authz.dry_run"] === "default/dry-deny-8082"), (l) => l !== undefined);
    expect(line?.["authz.dry_run_decision"]).toBe("deny");
  });

  test("an identity and address instead of a source workload: the destination's decision alone", async () => {
    const e = await explainOn(mesh.agents[1]!, { src: `${A}.13`, identity: SLEEP, dst: `${B}.12:8080` });
    expect(e.outbound).toBeUndefined();
    expect(e.inbound?.decision).toMatchObject({ allow: true, policy: "default/allow-sleep" });
    expect(e.notes.join(" ")).toMatch(/other's, whose identity is spiffe:\/\/cluster\.local\/ns\/default\/sa\/other/);
    const foreign = await explainOn(mesh.agents[1]!, { src: `${A}.13`, identity: "spiffe://elsewhere.example/ns/default/sa/sleep", dst: `${B}.12:8080` });
    expect(foreign).toMatchObject({ verdict: "refused", inbound: { refused: { code: "TRUST_DOMAIN_MISMATCH" } } });
    expect((await explainOn(mesh.agents[1]!, { src: `${A}.13`, identity: "sleep", dst: `${B}.12:8080` })).inbound?.refused?.code).toBe("CLIENT_IDENTITY_INVALID");
  });
});

describe("explain agrees with the data path: outbound routes", () => {
  test("a service VIP: port 80 mapped to 8080, the unhealthy endpoint skipped, the healthy one certain", async () => {
    const e = await agree(0, `${A}.10`, `127.${NET}.3.1:80`);
    expect(e.outbound?.service).toEqual({
      hostname: "echo.default.svc.cluster.local",
      port: 80,
      total: 2,
      verdicts: { allow: 1, deny: 0, refused: 0 },
      endpoints: [
        expect.objectContaining({ workload: expect.objectContaining({ name: "echo" }), status: "Healthy", port: 8080, weight: 1, chance: 1, admission: { verdict: "allow", reason: "allowed-no-policy" } }),
        expect.objectContaining({ workload: expect.objectContaining({ name: "echo-sick" }), status: "Unhealthy", weight: 0, chance: 0, skipped: "unhealthy" }),
      ],
    });
    expect(e.outbound).toMatchObject({ kind: "hbone", target: `${B}.10:8080`, destination: { name: "echo" } });
  });

  test("a service hostname, resolved as SOCKS5 resolves it; an unknown one refused as SOCKS5 refuses it", async () => {
    const e = await agree(0, `${A}.10`, "echo.default.svc.cluster.local:80");
    expect(e).toMatchObject({ verdict: "allow", query: { dst: "echo.default.svc.cluster.local:80" }, outbound: { kind: "hbone", target: `${B}.10:8080`, service: { hostname: "echo.default.svc.cluster.local" } } });
    expect(e.notes[0]).toBe(`echo.default.svc.cluster.local is the service at 127.${NET}.3.1 (its first VIP), as SOCKS5 resolves it`);
    expect((await agree(0, `${A}.10`, "nowhere.default.svc.cluster.local:80")).outbound?.refused?.code).toBe("SOCKS_UNKNOWN_HOST");
  });

  test("a service whose endpoint is outside the mesh, and a pod outside the mesh: passthrough", async () => {
    expect((await agree(0, `${A}.10`, `127.${NET}.3.3:80`)).outbound).toMatchObject({ kind: "passthrough", target: `${B}.20:8080`, destination: { name: "legacy" } });
    expect((await agree(0, `${A}.10`, `${B}.20:8080`)).outbound).toMatchObject({ kind: "passthrough", target: `${B}.20:8080` });
  });

  test("an address the mesh does not know: passthrough under ALLOW_ANY, refused under REGISTRY_ONLY (node-b)", async () => {
    expect((await agree(0, `${A}.10`, `127.${NET}.4.1:8080`)).outbound).toMatchObject({ kind: "passthrough", target: `127.${NET}.4.1:8080` });
    const e = await agree(1, `${B}.10`, `127.${NET}.4.1:8080`);
    expect(e).toMatchObject({ verdict: "refused", outbound: { node: "node-b", kind: "refused", refused: { code: "REGISTRY_ONLY" } } });
  });

  test("refusals: no healthy endpoint, the agent's own port, the HBONE port of a mesh pod", async () => {
    expect((await agree(0, `${A}.10`, `127.${NET}.3.2:80`)).outbound?.refused?.code).toBe("NO_HEALTHY_ENDPOINT");
    expect((await agree(0, `${A}.10`, `${A}.1:15000`)).outbound?.refused?.code).toBe("LOOP");
    expect((await agree(0, `${A}.10`, `${B}.10:15008`)).outbound?.refused?.code).toBe("LOOP");
  });

  test("a source on another node: refused here, naming the node to ask", async () => {
    const e = await agree(0, `${B}.10`, `${A}.10:8080`);
    expect(e.outbound?.refused?.code).toBe("UNKNOWN_SOURCE");
    expect(e.notes.join(" ")).toMatch(/runs on node node-b: ask that node's agent/);
  });

  test("a source outside the mesh is not captured: it reaches a mesh pod in plaintext; SOCKS5 refuses it (UNKNOWN_SOURCE)", async () => {
    const e = await explainOn(mesh.agents[0]!, { src: `${A}.12`, dst: `${B}.10:9999` });
    expect(e).toMatchObject({ verdict: "deny", outbound: { kind: "not-captured", refused: { code: "UNKNOWN_SOURCE" } }, inbound: { listener: "plaintext", decision: { reason: "denied-by-policy" } } });
    expect(e.inbound?.source.identity).toBeUndefined();
    // Through SOCKS5 (the only way it reaches this agent), the same connection is refused as unknown.
    const real = await connect(0, `${A}.12`, `${B}.10:9999`);
    expect(real).toMatchObject({ outcome: "refused", code: "UNKNOWN_SOURCE" });
  });
});

describe("explain: bad input gets a clear answer", () => {
  test("malformed or missing addresses and unknown parameters: 400 naming what is wrong; a non-GET: 405", async () => {
    const a = mesh.agents[0]!;
    for (const [q, why] of [
      ["dst=1.2.3.4:80", /missing src/],
      ["src=10.0.0.1", /missing dst/],
      ["src=not-an-ip&dst=1.2.3.4:80", /src "not-an-ip" is not an IP address/],
      ["src=10.0.0.1&dst=1.2.3.4", /has no port/],
      ["src=10.0.0.1&dst=fd00::1:80", /is an IPv6 address without a port: write \[fd00::1:80\]:<port>/],
      ["src=10.0.0.1&dst=fd00::zz:80", /IPv6 address goes in brackets/],
      ["src=10.0.0.1&dst=bad_name:80", /is not ip:port/],
      ["src=10.0.0.1&dst=bad_name&port=80", /is neither an IP address nor a hostname/],
      ["src=10.0.0.1&dst=1.2.3.4&port=99999", /port "99999" is not a port/],
      ["src=10.0.0.1&dst=1.2.3.4:80&color=red", /unknown parameter "color"/],
      ["src=10.0.0.1&src=10.0.0.2&dst=1.2.3.4:80", /src given more than once/],
    ] as const) {
      const r = await a.get("admin", `/debug/explain?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body, q).toMatch(/^EXPLAIN_QUERY_INVALID: /);
      expect(r.body, q).toMatch(why);
    }
    const post = await fetch(`http://${mesh.host(0)}:15000/debug/explain?src=${A}.10&dst=${B}.10:8080`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
  });

  test("IPv6 forms: an unknown IPv6 source and destination are explained, a mapped IPv4 is its IPv4", async () => {
    const v6 = await explainOn(mesh.agents[0]!, { src: "fd00::10", dst: "[fd00::20]:80" });
    expect(v6).toMatchObject({ query: { src: "fd00::10", dst: "[fd00::20]:80" }, verdict: "allow", outbound: { kind: "not-captured" } });
    const mapped = await explainOn(mesh.agents[0]!, { src: `::ffff:${A}.10`, dst: `[::ffff:${B}.10]:9999` });
    expect(mapped).toMatchObject({ query: { src: `${A}.10`, dst: `${B}.10:9999` }, verdict: "deny" });
  });
});

describe("ztunnel explain", () => {
  const run = promisify(execFile);
  test("text for a person, JSON for scripts; an agent that refuses the question exits 1 with its answer", async () => {
    const admin = `${mesh.host(0)}:15000`;
    const text = (await run(process.execPath, [ZTUNNEL_BIN, "explain", "--admin", admin, "--src", `${A}.10`, "--dst", `127.${NET}.3.1:80`], { timeout: 20_000 })).stdout;
    expect(text).toMatch(/^ALLOW: HBONE to echo\.default\.svc\.cluster\.local → default\/echo at 127\.99\.2\.10:8080/);
    expect(text).toMatch(/default\/echo-sick\s+node-b\s+Unhealthy\s+8080\s+0\s+skipped \(unhealthy\)/);
    expect(text).toMatch(/default\/deny-9999\s+Deny\s+no\s+no/);
    const json = JSON.parse((await run(process.execPath, [ZTUNNEL_BIN, "explain", "--admin", admin, "--src", `${A}.10`, "--dst", `${B}.10:9999`, "-o", "json"], { timeout: 20_000 })).stdout) as Explanation;
    expect(json).toMatchObject({ verdict: "deny", inbound: { decision: { policy: "default/deny-9999" } } });
    const bad = await run(process.execPath, [ZTUNNEL_BIN, "explain", "--admin", admin, "--src", "nope", "--dst", `${B}.10:9999`], { timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 1, stderr: expect.stringMatching(/^ztunnel explain: the agent's admin port at .* answered 400: EXPLAIN_QUERY_INVALID: src "nope" is not an IP address/) });
  }, 60_000);
});
