import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "@zt/state";
import { describeConfig, formatBindAddr, loadConfig } from "./config.js";
import { parseDuration } from "./config-values.js";

describe("loadConfig", () => {
  it("fills every field with its default from an empty environment", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      nodeName: os.hostname(),
      clusterId: "Kubernetes",
      trustDomain: "cluster.local",
      localXdsPath: undefined,
      localXdsMaxBytes: 4 * 1024 * 1024,
      outboundTrafficPolicy: "ALLOW_ANY",
      logFormat: "json",
      logLevel: "info",
      poolMaxStreamsPerConnection: 100,
      poolUnusedReleaseTimeoutMs: 300_000,
      http2StreamWindowSize: 4 * 1024 * 1024,
      http2ConnectionWindowSize: 16 * 1024 * 1024,
      secretTtlMs: 86_400_000,
      caCertsDir: path.resolve(".ztunnel/cacerts"),
      redirectMode: "none",
      handoverDir: "/var/run/ztunnel/handover",
      drainTimeoutMs: 5000,
      adminAddr: { ip: "127.0.0.1", port: 15000 },
      statsAddr: { ip: "0.0.0.0", port: 15020 },
      readinessAddr: { ip: "0.0.0.0", port: 15021 },
      outboundAddr: { ip: "0.0.0.0", port: 15001 },
      inboundAddr: { kind: "addr", ip: "0.0.0.0", port: 15008 },
      inboundPlaintextAddr: { ip: "0.0.0.0", port: 15006 },
      socks5Addr: { ip: "127.0.0.1", port: 15080 },
    });
  });

  it("refuses listener addresses capture cannot deliver to, naming each variable", () => {
    const problems = (env: NodeJS.ProcessEnv): string[] => {
      try {
        loadConfig({ REDIRECT_MODE: "tproxy", ...env });
        return [];
      } catch (e) {
        return (e as ConfigError).problems.map((p) => `${p.entry}: ${p.reason}`);
      }
    };
    expect(problems({})).toEqual([]);
    expect(problems({ INBOUND_ADDR: "workloads:15008" })).toEqual([expect.stringMatching(/^INBOUND_ADDR: per-workload HBONE listeners/)]);
    expect(problems({ OUTBOUND_ADDR: "127.0.0.1:15001", INBOUND_PLAINTEXT_ADDR: "127.0.0.2:15006" })).toEqual([
      expect.stringMatching(/^OUTBOUND_ADDR: .*one shared address/),
      expect.stringMatching(/^INBOUND_ADDR: .*one shared address/),
      expect.stringMatching(/^INBOUND_PLAINTEXT_ADDR: .*one shared address/),
    ]);
    expect(problems({ OUTBOUND_ADDR: "127.0.0.1:0" })).toEqual([expect.stringMatching(/^OUTBOUND_ADDR: .*fixed port/)]);
    expect(problems({ INBOUND_PLAINTEXT_ADDR: "[::]:15006" })).toEqual([expect.stringMatching(/^INBOUND_PLAINTEXT_ADDR: .*IPv4 only/)]);
    expect(problems({ REDIRECT_MODE: "none", INBOUND_ADDR: "workloads:15008" })).toEqual([]);
  });

  it("parses every variable it is given", () => {
    const c = loadConfig({
      NODE_NAME: "node-a",
      CLUSTER_ID: "c1",
      TRUST_DOMAIN: "example.org",
      LOCAL_XDS_PATH: "/etc/zt/workloads.yaml",
      OUTBOUND_TRAFFIC_POLICY: "registry_only",
      LOG_FORMAT: "text",
      LOG_LEVEL: "debug,proxy=trace",
      POOL_MAX_STREAMS_PER_CONNECTION: "7",
      POOL_UNUSED_RELEASE_TIMEOUT: "1h30m",
      HTTP2_STREAM_WINDOW_SIZE: "65535",
      HTTP2_CONNECTION_WINDOW_SIZE: "1048576",
      SECRET_TTL: "10s",
      CA_CERTS_DIR: "/var/run/cacerts",
      REDIRECT_MODE: "tproxy",
      HANDOVER_DIR: "/run/zt",
      DRAIN_TIMEOUT: "0",
      ADMIN_ADDR: "[::1]:0",
      INBOUND_ADDR: "127.0.0.9:15008",
      SOCKS5_ADDR: "127.0.0.2:1080",
    });
    expect(c).toMatchObject({
      nodeName: "node-a",
      clusterId: "c1",
      trustDomain: "example.org",
      localXdsPath: "/etc/zt/workloads.yaml",
      outboundTrafficPolicy: "REGISTRY_ONLY",
      logFormat: "text",
      logLevel: "debug",
      poolMaxStreamsPerConnection: 7,
      poolUnusedReleaseTimeoutMs: 5_400_000,
      http2StreamWindowSize: 65535,
      http2ConnectionWindowSize: 1048576,
      secretTtlMs: 10_000,
      caCertsDir: "/var/run/cacerts",
      redirectMode: "tproxy",
      handoverDir: "/run/zt",
      drainTimeoutMs: 0,
      adminAddr: { ip: "::1", port: 0 },
      inboundAddr: { kind: "addr", ip: "127.0.0.9", port: 15008 },
      socks5Addr: { ip: "127.0.0.2", port: 1080 },
    });
    expect(describeConfig(c)).toMatchObject({ adminAddr: "[::1]:0", inboundAddr: "127.0.0.9:15008", localXdsPath: "/etc/zt/workloads.yaml" });
  });

  it("reports every invalid variable at once, by name, value and reason", () => {
    const env = {
      TRUST_DOMAIN: "Cluster Local",
      OUTBOUND_TRAFFIC_POLICY: "DENY_ALL",
      LOG_FORMAT: "xml",
      LOG_LEVEL: "loud",
      POOL_MAX_STREAMS_PER_CONNECTION: "0",
      POOL_UNUSED_RELEASE_TIMEOUT: "5 minutes",
      HTTP2_STREAM_WINDOW_SIZE: "1k",
      SECRET_TTL: "5s",
      REDIRECT_MODE: "iptables",
      HANDOVER_DIR: `/${"d".repeat(90)}`,
      ADMIN_ADDR: "localhost:15000",
      STATS_ADDR: "0.0.0.0:70000",
      INBOUND_ADDR: "workloads:0",
      SOCKS5_ADDR: "::1:1080",
    };
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const ce = err as ConfigError;
    expect(ce.code).toBe("CONFIG_INVALID");
    expect(ce.problems.map((p) => p.entry).sort()).toEqual(Object.keys(env).sort());
    for (const p of ce.problems) {
      expect(p.source).toBe("env");
      expect(p.reason.length).toBeGreaterThan(5);
      expect(ce.message).toContain(`env: ${p.entry}: ${p.reason} (value: ${JSON.stringify(env[p.entry as keyof typeof env])})`);
    }
    expect(ce.message).toContain("expected one of ALLOW_ANY, REGISTRY_ONLY");
    expect(ce.message).toContain("the minimum is 10s");
    expect(ce.message).toContain('"localhost" is not an IP address');
    expect(ce.message).toContain("HANDOVER_DIR: too long for unix socket paths");
  });

  it("checks the connection window against the stream window", () => {
    expect(() => loadConfig({ HTTP2_STREAM_WINDOW_SIZE: "8388608", HTTP2_CONNECTION_WINDOW_SIZE: "65535" })).toThrow(
      /HTTP2_CONNECTION_WINDOW_SIZE: must be at least HTTP2_STREAM_WINDOW_SIZE/,
    );
  });

  it("treats empty variables as unset and resolves a relative CA_CERTS_DIR and HANDOVER_DIR", () => {
    const c = loadConfig({ NODE_NAME: "", LOG_LEVEL: " ", CA_CERTS_DIR: "certs", HANDOVER_DIR: "run" });
    expect(c.handoverDir).toBe(path.resolve("run"));
    expect(c.nodeName).toBe(os.hostname());
    expect(c.logLevel).toBe("info");
    expect(c.caCertsDir).toBe(path.resolve("certs"));
  });

  it("chooses the discovery source: the file when LOCAL_XDS_PATH is set, else the API server inside a cluster, else the embedded file", () => {
    expect(loadConfig({}).discovery).toBe("file");
    expect(loadConfig({ KUBERNETES_SERVICE_HOST: "10.96.0.1" }).discovery).toBe("kubernetes");
    expect(loadConfig({ KUBERNETES_SERVICE_HOST: "10.96.0.1", LOCAL_XDS_PATH: "w.yaml" }).discovery).toBe("file");
    expect(loadConfig({ DISCOVERY: "kubernetes" }).discovery).toBe("kubernetes");
    expect(loadConfig({ DISCOVERY: "file", KUBERNETES_SERVICE_HOST: "10.96.0.1" }).discovery).toBe("file");
    expect(() => loadConfig({ DISCOVERY: "kubernetes", LOCAL_XDS_PATH: "w.yaml" })).toThrow(/DISCOVERY: LOCAL_XDS_PATH is set too: the workload file and the Kubernetes API cannot both be the source; unset one/);
    expect(() => loadConfig({ DISCOVERY: "istiod" })).toThrow(/DISCOVERY: .*auto, file, kubernetes, xds/);
  });

  it("chooses delta xDS when XDS_ADDRESS is set, and refuses it beside another source", () => {
    expect(loadConfig({ XDS_ADDRESS: "istiod.istio-system.svc:15012" }).discovery).toBe("xds");
    expect(loadConfig({ XDS_ADDRESS: "10.0.0.1:15012", KUBERNETES_SERVICE_HOST: "10.96.0.1" }).discovery).toBe("xds");
    expect(loadConfig({ DISCOVERY: "xds", XDS_ADDRESS: "[fd00::1]:15012" }).xdsAddress).toBe("[fd00::1]:15012");
    expect(() => loadConfig({ DISCOVERY: "xds" })).toThrow(/DISCOVERY: XDS_ADDRESS is not set/);
    expect(() => loadConfig({ XDS_ADDRESS: "a:1", LOCAL_XDS_PATH: "w.yaml" })).toThrow(/XDS_ADDRESS: LOCAL_XDS_PATH is set too: exactly one source/);
    expect(() => loadConfig({ XDS_ADDRESS: "a:1", DISCOVERY: "kubernetes" })).toThrow(/XDS_ADDRESS: DISCOVERY=kubernetes too/);
    expect(() => loadConfig({ XDS_ADDRESS: "https://istiod:15012" })).toThrow(/XDS_ADDRESS: write host:port without a scheme .*istiod:15012/);
    expect(() => loadConfig({ CA_ADDRESS: "istiod" })).toThrow(/CA_ADDRESS: expected host:port/);
    expect(() => loadConfig({ CA_ADDRESS: "istiod:0" })).toThrow(/CA_ADDRESS: port 0 is out of range/);
    const c = loadConfig({ CA_ADDRESS: "zt-controller.istio-system.svc:15012", CA_ROOT_CA: "root.pem", AUTH_TOKEN: "tok" });
    expect(c.caAddress).toBe("zt-controller.istio-system.svc:15012");
    expect(c.caRootCa).toBe(path.resolve("root.pem"));
    expect(c.authToken).toBe(path.resolve("tok"));
    expect(loadConfig({}).caAddress).toBeUndefined();
  });

  it("measures a relative HANDOVER_DIR once resolved (a socket path holds at most 107 bytes)", () => {
    const relative = "h".repeat(85);
    expect(() => loadConfig({ HANDOVER_DIR: relative })).toThrow(/HANDOVER_DIR: too long for unix socket paths: at most 90 bytes \(resolved: /);
  });

  it("formats bind addresses", () => {
    expect(formatBindAddr({ ip: "10.0.0.1", port: 1 })).toBe("10.0.0.1:1");
    expect(formatBindAddr({ kind: "addr", ip: "fd00::1", port: 2 })).toBe("[fd00::1]:2");
    expect(formatBindAddr({ kind: "workloads", port: 3 })).toBe("workloads:3");
  });
});

describe("parseDuration", () => {
  const max = 2 ** 31 - 1;
  it.each([
    ["300ms", 300],
    ["10s", 10_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["1m30s500ms", 90_500],
    ["1.5s", 1500],
    ["90", 90_000],
    ["0", 0],
  ])("%s is %d ms", (raw, ms) => {
    expect(parseDuration(raw, 0, max)).toBe(ms);
  });

  it.each(["", "5", "m", "10 s", "1d", "-1s", "1h30", "s10", "1.s"])("rejects %j", (raw) => {
    const min = raw === "5" ? 10_000 : 0;
    expect(() => parseDuration(raw, min, max)).toThrow();
  });

  it("refuses durations no timer can hold", () => {
    expect(() => parseDuration("600h", 0, max)).toThrow(/too long/);
  });
});
