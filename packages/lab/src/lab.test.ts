import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLab, type Lab } from "./create-lab.js";
import { simpleLabSpec, type PodMode } from "./plan.js";
import { startEchoServer, tcpRoundTrip, type EchoServer, type RoundTrip } from "./probe.js";
import { listNamespaces } from "./run.js";

// Needs root and network namespaces; CI runs as root. If the lab cannot be built, these tests FAIL.
const VIP = "198.18.128.10";
const host = (addr: string): string => addr.slice(0, addr.lastIndexOf(":"));

describe.each<PodMode>(["host-ips", "pod-ns"])("netns lab, %s mode, 2 nodes x 2 pods", (mode) => {
  const prefix = `zt-${String(process.pid)}-${mode === "host-ips" ? "h" : "p"}`;
  let lab: Lab;
  const servers: EchoServer[] = [];

  beforeAll(async () => {
    const spec = simpleLabSpec({ nodes: 2, pods: 2, podMode: mode, prefix });
    spec.services = [{ vip: VIP, port: 80, endpoints: spec.nodes[1]!.pods.map((p) => ({ ip: p.ip, port: 8080 })) }];
    lab = await createLab(spec);
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  /** A client "in" a pod: its own namespace (pod-ns), or its node's namespace bound to the pod IP (host-ips). */
  const fromPod = (name: string, to: { host: string; port: number }): Promise<RoundTrip> => {
    const pod = lab.pod(name);
    return tcpRoundTrip(lab, pod.ns, mode === "host-ips" ? { ...to, localAddress: pod.ip } : to);
  };
  const checkIntact = (rt: RoundTrip, server: EchoServer): void => {
    expect(rt.received).toBe(rt.sent);
    expect(rt.receivedSha256).toBe(rt.sentSha256);
    const seen = server.connections.find((c) => c.remote === rt.local);
    expect(seen?.sha256).toBe(rt.sentSha256);
    expect(seen?.bytes).toBe(rt.sent);
  };

  it("builds the planned namespaces and addresses", async () => {
    expect(lab.nodes.map((n) => n.uplinkIp)).toEqual(["198.18.0.1", "198.18.0.2"]);
    const names = await listNamespaces();
    for (const ns of lab.namespaces) expect(names).toContain(ns);
    expect(lab.namespaces).toHaveLength(mode === "pod-ns" ? 7 : 3);
    const { stdout } = await lab.exec(lab.pod("pod-1-1").ns, ["ip", "-4", "-o", "addr", "show"]);
    expect(stdout).toContain("198.19.1.10/32");
  });

  it("carries TCP between pods on different nodes, intact both ways, source IP kept", async () => {
    const dst = lab.pod("pod-2-1");
    const server = await startEchoServer(lab, dst.ns, dst.ip, 7000);
    servers.push(server);
    const rt = await fromPod("pod-1-1", { host: dst.ip, port: 7000 });
    expect(host(rt.local)).toBe("198.19.1.10");
    expect(rt.remote).toBe(`${dst.ip}:7000`);
    checkIntact(rt, server);
    const back = await fromPod("pod-1-2", { host: dst.ip, port: 7000 });
    expect(host(back.local)).toBe("198.19.1.11");
    checkIntact(back, server);
  });

  it("carries TCP between two pods of the same node", async () => {
    const dst = lab.pod("pod-1-1");
    const server = await startEchoServer(lab, dst.ns, dst.ip, 7001);
    servers.push(server);
    checkIntact(await fromPod("pod-1-2", { host: dst.ip, port: 7001 }), server);
  });

  it("DNATs the service VIP to its endpoints (PREROUTING from pods, OUTPUT from the node)", async () => {
    const eps = await Promise.all(["pod-2-1", "pod-2-2"].map((n) => startEchoServer(lab, lab.pod(n).ns, lab.pod(n).ip, 8080)));
    servers.push(...eps);
    const trips: RoundTrip[] = [];
    for (let k = 0; k < 6; k++) trips.push(await fromPod("pod-1-1", { host: VIP, port: 80 }));
    trips.push(await tcpRoundTrip(lab, lab.node("node-1").ns, { host: VIP, port: 80 }));
    const seen = eps.flatMap((s) => s.connections);
    expect(seen).toHaveLength(trips.length);
    for (const rt of trips) {
      expect(rt.remote).toBe(`${VIP}:80`);
      expect(rt.receivedSha256).toBe(rt.sentSha256);
      expect(seen.find((c) => c.remote === rt.local)?.sha256).toBe(rt.sentSha256);
    }
    expect(host(trips.at(-1)!.local)).toBe("198.18.0.1");
  });

  it("has no route out: no default route in fabric or nodes, 1.1.1.1 unreachable (route lookup only)", async () => {
    for (const ns of [lab.fabricNs, ...lab.nodes.map((n) => n.ns)]) {
      const { stdout } = await lab.exec(ns, ["ip", "route", "show", "default"]);
      expect(stdout.trim()).toBe("");
    }
    for (const n of lab.nodes) {
      await expect(lab.exec(n.ns, ["ip", "route", "get", "1.1.1.1"])).rejects.toThrow(/unreachable/i);
    }
  });

  it("destroy() stops its processes and leaves no namespace with the prefix; twice is fine", async () => {
    const pids = servers.map((s) => s.child.pid);
    await lab.destroy();
    await lab.destroy();
    for (const s of servers) expect(s.child.exitCode !== null || s.child.signalCode !== null).toBe(true);
    expect(pids.every((p) => p !== undefined)).toBe(true);
    const left = (await listNamespaces()).filter((ns) => ns === prefix || ns.startsWith(`${prefix}-`));
    expect(left).toEqual([]);
    expect(() => lab.exec(lab.nodes[0]!.ns, ["true"])).toThrow(/not a live namespace/);
  });
});
