import { describe, expect, it } from "vitest";
import { type AuthzConnection, authorize, stringMatches } from "./authz.js";
import { createMeshStore } from "./store.js";
import type { Policy, PolicyMatch, Workload } from "./types.js";

const pol = (name: string, action: Policy["action"], matches: PolicyMatch[] | "none", extra: Partial<Policy> = {}): Policy => ({
  name, namespace: "default", scope: "Namespace", action, dryRun: false, selector: new Map(),
  rules: matches === "none" ? [] : [[matches]], ...extra,
});

const sleep = { trustDomain: "cluster.local", namespace: "default", serviceAccount: "sleep" };
const mtls: AuthzConnection = { srcIdentity: sleep, srcIp: "10.0.0.1", dstIp: "10.0.0.2", dstPort: 8080 };
const plain: AuthzConnection = { srcIp: "10.0.0.1", dstIp: "10.0.0.2", dstPort: 8080 };
const allowed = (ps: Policy[], c: AuthzConnection = mtls) => authorize(ps, c).allow;
const matches = (m: PolicyMatch, c: AuthzConnection = mtls) => allowed([pol("m", "Allow", [m])], c);

describe("stringMatches", () => {
  it.each([
    ["abc", "abc", true], ["abc", "abcd", false], ["ab*", "abcd", true], ["ab*", "xab", false],
    ["*cd", "abcd", true], ["*cd", "cdx", false], ["*", "x", true], ["*", "", false],
  ])("%j vs %j -> %s", (p, v, want) => expect(stringMatches(p, v)).toBe(want));
});

describe("authorize: policy combination", () => {
  it("allows with no policy", () => {
    expect(authorize([], mtls)).toEqual({ allow: true, reason: "allowed-no-policy", dryRun: [] });
  });

  it("a matching DENY wins over a matching ALLOW", () => {
    const d = authorize([pol("a", "Allow", [{}]), pol("d", "Deny", [{ destinationPorts: [8080] }])], mtls);
    expect(d).toEqual({ allow: false, policy: "default/d", reason: "denied-by-policy", dryRun: [] });
  });

  it("a non-matching DENY alone allows", () => {
    expect(authorize([pol("d", "Deny", [{ destinationPorts: [9999] }])], mtls).reason).toBe("allowed-no-policy");
  });

  it("with an ALLOW policy, a matching ALLOW is needed", () => {
    expect(authorize([pol("a", "Allow", [{ destinationPorts: [9999] }])], mtls)).toEqual({ allow: false, reason: "denied-no-allow-match", dryRun: [] });
    expect(authorize([pol("a", "Allow", [{ destinationPorts: [9999] }]), pol("b", "Allow", [{ destinationPorts: [8080] }])], mtls))
      .toMatchObject({ allow: true, policy: "default/b", reason: "allowed-by-policy" });
  });

  it("an ALLOW policy without rules allows nothing", () => {
    expect(allowed([pol("nothing", "Allow", "none")])).toBe(false);
  });

  it("rules OR, clauses AND, matches OR", () => {
    const p = (rules: Policy["rules"]) => allowed([{ ...pol("p", "Allow", "none"), rules }]);
    const yes: PolicyMatch = { destinationPorts: [8080] };
    const no: PolicyMatch = { destinationPorts: [1] };
    expect(p([[[no]], [[yes]]])).toBe(true);
    expect(p([[[yes], [no]]])).toBe(false);
    expect(p([[[yes], [no, yes]]])).toBe(true);
    expect(p([[]])).toBe(true); // a rule without clauses matches everything
    expect(p([[[]]])).toBe(false); // a clause without matches matches nothing
  });

  it("dry-run policies never decide but are recorded", () => {
    const dryDeny = pol("dd", "Deny", [{}], { dryRun: true });
    expect(authorize([dryDeny], mtls)).toEqual({ allow: true, reason: "allowed-no-policy", dryRun: ["default/dd"], dryRunAllow: false });
    const dryAllowMiss = pol("da", "Allow", [{ destinationPorts: [1] }], { dryRun: true });
    expect(authorize([dryAllowMiss], mtls)).toEqual({ allow: true, reason: "allowed-no-policy", dryRun: ["default/da"], dryRunAllow: false });
    const dryAllowHit = pol("dh", "Allow", [{}], { dryRun: true });
    expect(authorize([dryAllowHit, pol("d", "Deny", [{}])], mtls)).toEqual({
      allow: false, policy: "default/d", reason: "denied-by-policy", dryRun: ["default/dh"], dryRunAllow: false,
    });
    expect(authorize([pol("dx", "Deny", [{ destinationPorts: [1] }], { dryRun: true })], mtls)).toEqual({
      allow: true, reason: "allowed-no-policy", dryRun: [], dryRunAllow: true,
    });
  });
});

describe("authorize: match fields", () => {
  it("principals in Istio or SPIFFE form, with exact/prefix/suffix/presence", () => {
    expect(matches({ principals: ["cluster.local/ns/default/sa/sleep"] })).toBe(true);
    expect(matches({ principals: ["spiffe://cluster.local/ns/default/sa/sleep"] })).toBe(true);
    expect(matches({ principals: ["cluster.local/ns/default/*"] })).toBe(true);
    expect(matches({ principals: ["*/sa/sleep"] })).toBe(true);
    expect(matches({ principals: ["*"] })).toBe(true);
    expect(matches({ principals: ["other.td/ns/default/sa/sleep"] })).toBe(false);
    expect(matches({ principals: ["cluster.local/ns/default/sa/other", "*/sa/sleep"] })).toBe(true);
  });

  it("namespaces and serviceAccounts (sa or ns/sa)", () => {
    expect(matches({ namespaces: ["default"] })).toBe(true);
    expect(matches({ namespaces: ["def*"] })).toBe(true);
    expect(matches({ namespaces: ["kube-system"] })).toBe(false);
    expect(matches({ serviceAccounts: ["sleep"] })).toBe(true);
    expect(matches({ serviceAccounts: ["default/sleep"] })).toBe(true);
    expect(matches({ serviceAccounts: ["other/sleep"] })).toBe(false);
    expect(matches({ serviceAccounts: ["*eep"] })).toBe(true);
  });

  it("plaintext has no identity: positive identity fields never match, not* ones always do", () => {
    expect(matches({ principals: ["*"] }, plain)).toBe(false);
    expect(matches({ namespaces: ["*"] }, plain)).toBe(false);
    expect(matches({ serviceAccounts: ["*"] }, plain)).toBe(false);
    expect(matches({ notPrincipals: ["*"] }, plain)).toBe(true);
    expect(matches({ notNamespaces: ["default"] }, plain)).toBe(true);
    // the Istio "deny plaintext" recipe
    expect(allowed([pol("require-mtls", "Deny", [{ notPrincipals: ["*"] }])], plain)).toBe(false);
    expect(allowed([pol("require-mtls", "Deny", [{ notPrincipals: ["*"] }])], mtls)).toBe(true);
  });

  it("not* fields exclude", () => {
    expect(matches({ notPrincipals: ["*/sa/sleep"] })).toBe(false);
    expect(matches({ notNamespaces: ["kube-*"] })).toBe(true);
    expect(matches({ notServiceAccounts: ["sleep"] })).toBe(false);
    expect(matches({ notDestinationPorts: [8080] })).toBe(false);
    expect(matches({ notDestinationPorts: [9090] })).toBe(true);
    expect(matches({ destinationPorts: [8080], notSourceIps: ["10.0.0.1"] })).toBe(false);
  });

  it("CIDRs and IPs for source and destination", () => {
    expect(matches({ sourceIps: ["10.0.0.0/24"] })).toBe(true);
    expect(matches({ sourceIps: ["10.1.0.0/16"] })).toBe(false);
    expect(matches({ destinationIps: ["10.0.0.2"] })).toBe(true);
    expect(matches({ notDestinationIps: ["10.0.0.0/8"] })).toBe(false);
    expect(matches({ sourceIps: ["fd00::/8"] }, { ...mtls, srcIp: "fd00::5" })).toBe(true);
    expect(matches({ sourceIps: ["10.0.0.0/8"] }, { ...mtls, srcIp: "::ffff:10.9.9.9" })).toBe(true);
  });

  it("all present fields must match; empty lists are ignored", () => {
    expect(matches({ namespaces: ["default"], destinationPorts: [8080] })).toBe(true);
    expect(matches({ namespaces: ["default"], destinationPorts: [1] })).toBe(false);
    expect(matches({ principals: [], destinationPorts: [8080] })).toBe(true);
  });
});

describe("authorize with store.policiesFor: WorkloadSelector", () => {
  it("applies a selector policy only to matching workloads", () => {
    const w = (name: string, ip: string, labels: [string, string][]): Workload => ({
      uid: name, name, namespace: "default", serviceAccount: "default", workloadIps: [ip], protocol: "HBONE", node: "n",
      trustDomain: "cluster.local", clusterId: "c", canonicalName: name, canonicalRevision: "v1", workloadType: "pod",
      workloadName: name, status: "Healthy", labels: new Map(labels), capacity: 1, services: new Map(),
    });
    const db = w("db", "10.0.0.5", [["app", "db"]]);
    const web = w("web", "10.0.0.6", [["app", "web"]]);
    const onlySleepToDb = pol("db-from-sleep", "Allow", [{ serviceAccounts: ["default/sleep"] }], {
      scope: "WorkloadSelector", selector: new Map([["app", "db"]]),
    });
    const store = createMeshStore({ workloads: [db, web], services: [], policies: [onlySleepToDb] });
    const other = { ...mtls, srcIdentity: { ...sleep, serviceAccount: "other" } };
    expect(authorize(store.policiesFor(db), mtls).allow).toBe(true);
    expect(authorize(store.policiesFor(db), other).allow).toBe(false);
    expect(authorize(store.policiesFor(web), other)).toMatchObject({ allow: true, reason: "allowed-no-policy" });
  });
});
