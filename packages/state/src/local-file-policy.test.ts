import { describe, expect, it } from "vitest";
import { ConfigError, type ConfigProblem } from "./errors.js";
import { parseLocalConfig } from "./local-file.js";

const SRC = "pol.yaml";
const parse = (t: string) => parseLocalConfig(t, SRC, { trustDomain: "cluster.local", clusterId: "c" });
const pol = (body: string) => `policies:\n- {name: p, namespace: d${body}}\n`;
function problemsOf(text: string): readonly ConfigProblem[] {
  try {
    parse(text);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("policies", () => {
  it("fills defaults", () => {
    expect(parse(pol("")).policies[0]).toEqual({
      name: "p", namespace: "d", scope: "Namespace", action: "Allow", dryRun: false, selector: new Map(), rules: [],
    });
  });

  it("reads all match fields and normalizes CIDRs", () => {
    const p = parse(`policies:
- name: p
  namespace: d
  scope: WorkloadSelector
  action: Deny
  dryRun: true
  selector: {app: echo}
  rules:
  - - - principals: ["cluster.local/ns/d/sa/a", "spiffe://cluster.local/ns/*"]
        notPrincipals: ["*"]
        namespaces: [d]
        notNamespaces: ["kube-*"]
        serviceAccounts: ["d/a", b]
        notServiceAccounts: ["*-admin"]
        sourceIps: ["10.0.0.0/8", "::FFFF:192.168.1.1"]
        notSourceIps: ["FD00::/8"]
        destinationIps: ["10.96.0.1"]
        notDestinationIps: ["0.0.0.0/0"]
        destinationPorts: [80, 443]
        notDestinationPorts: [9999]
    - - {destinationPorts: [8080]}
`).policies[0];
    expect(p?.scope).toBe("WorkloadSelector");
    expect(p?.action).toBe("Deny");
    expect(p?.dryRun).toBe(true);
    expect(p?.selector).toEqual(new Map([["app", "echo"]]));
    expect(p?.rules).toHaveLength(1);
    expect(p?.rules[0]).toHaveLength(2);
    expect(p?.rules[0]?.[0]?.[0]).toEqual({
      principals: ["cluster.local/ns/d/sa/a", "spiffe://cluster.local/ns/*"], notPrincipals: ["*"],
      namespaces: ["d"], notNamespaces: ["kube-*"], serviceAccounts: ["d/a", "b"], notServiceAccounts: ["*-admin"],
      sourceIps: ["10.0.0.0/8", "192.168.1.1"], notSourceIps: ["fd00::/8"], destinationIps: ["10.96.0.1"],
      notDestinationIps: ["0.0.0.0/0"], destinationPorts: [80, 443], notDestinationPorts: [9999],
    });
  });

  it.each([
    [", scope: Cluster", "scope", '"Cluster"', /Global, Namespace, WorkloadSelector/],
    [", action: ALLOW", "action", '"ALLOW"', /Allow, Deny/],
    [", dryRun: yes", "dryRun", '"yes"', /true or false/],
    [", selector: {app: x}", "selector", '{"app":"x"}', /only used with scope WorkloadSelector/],
    [", rules: [[{ports: [1]}]]", "rules[0][0]", '{"ports":[1]}', /list of match mappings/],
    [", rules: [[[5]]]", "rules[0][0][0]", "5", /mapping of match fields/],
    [", rules: [[[{ports: [1]}]]]", "rules[0][0][0].ports", "[1]", /unknown key "ports"/],
    [", rules: [[[{destinationPorts: [0]}]]]", "rules[0][0][0].destinationPorts[0]", "0", /1\.\.65535/],
    [", rules: [[[{notDestinationPorts: [\"80\"]}]]]", "rules[0][0][0].notDestinationPorts[0]", '"80"', /1\.\.65535/],
    [", rules: [[[{sourceIps: [\"10.0.0.0/40\"]}]]]", "rules[0][0][0].sourceIps[0]", '"10.0.0.0/40"', /CIDR/],
    [", rules: [[[{notDestinationIps: [\"host\"]}]]]", "rules[0][0][0].notDestinationIps[0]", '"host"', /CIDR/],
    [", rules: [[[{principals: [\"*mid*\"]}]]]", "rules[0][0][0].principals[0]", '"*mid*"', /prefix/],
    [", rules: [[[{namespaces: [\"\"]}]]]", "rules[0][0][0].namespaces[0]", '""', /empty/],
    [", rules: [[[{serviceAccounts: sa}]]]", "rules[0][0][0].serviceAccounts", '"sa"', /must be a list/],
  ])("rejects %s", (body, field, value, reason) => {
    const ps = problemsOf(pol(body));
    expect(ps).toHaveLength(1);
    expect(ps[0]).toMatchObject({ source: SRC, entry: "policies[0]", field, value });
    expect(ps[0]?.reason).toMatch(reason);
  });

  it("rejects a missing name and a duplicate policy", () => {
    const ps = problemsOf("policies:\n- {namespace: d}\n- {name: p, namespace: d}\n- {name: p, namespace: d}\n");
    expect(ps.map((p) => [p.entry, p.field])).toEqual([["policies[0]", "name"], ["policies[2]", "name"]]);
    expect(ps[1]?.reason).toMatch(/already defined by policies\[1\]/);
  });
});
