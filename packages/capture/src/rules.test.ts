import { describe, expect, it } from "vitest";
import { chainsOf, defaultCaptureParams, jumpsOf, ruleTables } from "./rules.js";

const rulesOf = (lines: string[], chain: string): string[] => lines.filter((l) => l.startsWith(`-A ${chain} `));

describe("capture rules", () => {
  const { mangle, nat } = ruleTables(defaultCaptureParams);
  const pre = rulesOf(mangle, "ZTUNNEL-PRERT");

  it("match established transparent sockets first, skip the agent's own traffic, then capture", () => {
    expect(pre.map((l) => /--comment "([^"]+)"|-i lo -j RETURN/.exec(l)?.[1] ?? "lo")).toEqual([
      "established transparent socket",
      "agent own traffic",
      "HBONE to a local pod",
      "lo",
      "from a local pod: outbound",
      "to a local pod from outside the mesh",
    ]);
    expect(pre[0]).toContain("-m socket --transparent");
    expect(pre[2]).toMatch(/--match-set ztunnel-pods-ips dst --dport 15008 .*-j TPROXY --on-port 15008 --on-ip 127.0.0.1 --tproxy-mark 0x111\/0xfff/);
    // Replies to the node (kubelet probes) are never taken for outbound connections.
    expect(pre[4]).toMatch(/--match-set ztunnel-pods-ips src -m addrtype ! --dst-type LOCAL .*--on-port 15001/);
    expect(pre[5]).toMatch(/--match-set ztunnel-pods-ips dst .*--on-port 15006/);
  });

  it("deliver diverted packets locally and reroute the agent's same-node HBONE through lo", () => {
    expect(rulesOf(mangle, "ZTUNNEL-DIVERT")).toEqual(["-A ZTUNNEL-DIVERT -j MARK --set-xmark 0x111/0xfff", "-A ZTUNNEL-DIVERT -j ACCEPT"]);
    expect(rulesOf(mangle, "ZTUNNEL-OUTPUT")).toEqual([expect.stringMatching(/--mark 0x539\/0xfff .*dst --dport 15008 .*-j MARK --set-xmark 0x111\/0xfff$/)]);
  });

  it("keep captured packets away from kube-proxy's DNAT", () => {
    expect(rulesOf(nat, "ZTUNNEL-NAT-PRERT")).toEqual([expect.stringMatching(/^-A ZTUNNEL-NAT-PRERT -m mark --mark 0x111\/0xfff .*-j ACCEPT$/)]);
  });

  it("follow the parameters", () => {
    const p = { ...defaultCaptureParams, outboundPort: 25001, inboundPort: 25008, plaintextPort: 25006, onIp: "10.1.2.3", ipset: "s1", chainPrefix: "ZX", captureMark: 0x222, agentMark: 0x333 };
    const text = [...ruleTables(p).mangle, ...ruleTables(p).nat].join("\n");
    for (const want of ["--on-port 25001", "--on-port 25008", "--on-port 25006", "--dport 25008", "--on-ip 10.1.2.3", "--match-set s1", "0x222/0xfff", "0x333/0xfff", ":ZX-PRERT", ":ZX-NAT-PRERT"]) {
      expect(text).toContain(want);
    }
    expect(text).not.toMatch(/ZTUNNEL|1500[168]|0x111|0x539|ztunnel-pods-ips/);
    expect(chainsOf(p)).toEqual({ prerouting: "ZX-PRERT", divert: "ZX-DIVERT", output: "ZX-OUTPUT", natPrerouting: "ZX-NAT-PRERT" });
  });

  it("hook one jump into each built-in chain", () => {
    expect(jumpsOf(defaultCaptureParams).map((j) => `${j.table} ${j.chain} ${j.spec}`)).toEqual([
      "mangle PREROUTING -m comment --comment ztunnel -j ZTUNNEL-PRERT",
      "mangle OUTPUT -m comment --comment ztunnel -j ZTUNNEL-OUTPUT",
      "nat PREROUTING -m comment --comment ztunnel -j ZTUNNEL-NAT-PRERT",
    ]);
  });
});
