import { describe, expect, test } from "vitest";
import { authorize, createMeshStore, type AuthzConnection, type Policy, type Workload } from "@zt/state";
import type { AuthorizationPolicy, ClusterNames, TranslationProblem } from "./objects.js";
import { translatePolicies } from "./policies.js";

// AuthorizationPolicy objects, cases from Istio's AuthorizationPolicy reference and its
// ztunnel translation (pilot/pkg/serviceregistry/ambient/authorization.go); each asserted
// by the decision the translated policy gives a connection.
const NAMES: ClusterNames = { clusterId: "Kubernetes", trustDomain: "cluster.local", domainSuffix: "cluster.local", rootNamespace: "istio-system" };

function ap(name: string, spec: Record<string, unknown>, o: { ns?: string; annotations?: Record<string, string> } = {}): AuthorizationPolicy {
  return { metadata: { name, namespace: o.ns ?? "default", annotations: o.annotations ?? {} }, spec: spec as AuthorizationPolicy["spec"] };
}
function run(...aps: AuthorizationPolicy[]): { policies: Policy[]; problems: TranslationProblem[] } {
  const problems: TranslationProblem[] = [];
  const policies = translatePolicies(new Map(aps.map((a) => [`${a.metadata!.namespace}/${a.metadata!.name}`, a])), NAMES, problems);
  return { policies, problems };
}
function workload(name: string, namespace: string, labels: Record<string, string> = {}): Workload {
  return {
    uid: `Kubernetes//Pod/${namespace}/${name}`, name, namespace, serviceAccount: name, workloadIps: [namespace === "default" ? "10.244.1.10" : "10.244.2.10"], protocol: "HBONE", node: "node-a",
    trustDomain: "cluster.local", clusterId: "Kubernetes", canonicalName: name, canonicalRevision: "latest", workloadType: "pod", workloadName: name, status: "Healthy",
    labels: new Map(Object.entries(labels)), capacity: 1, services: new Map(),
  };
}
const ECHO = workload("echo", "default", { app: "echo" });
const OTHER = workload("other", "prod", { app: "echo" });
interface Conn {
  from?: string; // "ns/sa"
  ip?: string;
  port?: number;
  to?: Workload;
}
/** Allowed? for a connection from `from` (an identity, or none: plaintext) to `to`:`port`. */
function allowed(policies: Policy[], c: Conn = {}): boolean {
  const store = createMeshStore({ workloads: [ECHO, OTHER], services: [], policies });
  const to = c.to ?? ECHO;
  const [namespace, serviceAccount] = (c.from ?? "default/sleep").split("/") as [string, string];
  const conn: AuthzConnection = {
    ...(c.from === "" ? {} : { srcIdentity: { trustDomain: "cluster.local", namespace, serviceAccount } }),
    srcIp: c.ip ?? "10.244.1.20",
    dstIp: to.workloadIps[0]!,
    dstPort: c.port ?? 8080,
  };
  return authorize(store.policiesFor(store.workloadByUid(to.uid)!), conn).allow;
}

describe("AuthorizationPolicy as ztunnel enforces it", () => {
  test("ALLOW from principals: only that identity; written with spiffe:// it never matches (as in Istio), and says so", () => {
    const { policies, problems } = run(ap("p", { action: "ALLOW", rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }] }] }));
    expect(allowed(policies, { from: "default/sleep" })).toBe(true);
    expect(allowed(policies, { from: "default/curl" })).toBe(false);
    expect(allowed(policies, { from: "" })).toBe(false);
    expect(problems).toEqual([]);
    const spiffe = run(ap("p", { rules: [{ from: [{ source: { principals: ["spiffe://cluster.local/ns/default/sa/sleep"] } }] }] }));
    expect(allowed(spiffe.policies, { from: "default/sleep" })).toBe(false);
    expect(spiffe.problems[0]!.reason).toMatch(/spiffe:\/\/, which Istio never matches/);
  });

  test("empty forms: ALLOW with no rules allows nothing, a rule {} allows all; DENY with no rules denies nothing, {} denies all", () => {
    expect(allowed(run(ap("p", { action: "ALLOW" })).policies)).toBe(false);
    expect(allowed(run(ap("p", { action: "ALLOW", rules: [{}] })).policies)).toBe(true);
    expect(allowed(run(ap("p", { action: "DENY" })).policies)).toBe(true);
    expect(allowed(run(ap("p", { action: "DENY", rules: [{}] })).policies)).toBe(false);
    // An absent action is ALLOW.
    expect(run(ap("p", {})).policies[0]!.action).toBe("Allow");
  });

  test("namespaces, service accounts (bare: the policy's namespace), ipBlocks (a bare IP is a /32), ports, and their not* forms", () => {
    const ns = run(ap("p", { rules: [{ from: [{ source: { namespaces: ["prod*"] } }] }] })).policies;
    expect(allowed(ns, { from: "production/a" })).toBe(true);
    expect(allowed(ns, { from: "default/a" })).toBe(false);
    const sa = run(ap("p", { rules: [{ from: [{ source: { serviceAccounts: ["sleep"] } }] }] })).policies;
    expect(allowed(sa, { from: "default/sleep" })).toBe(true);
    expect(allowed(sa, { from: "other/sleep" })).toBe(false);
    const ips = run(ap("p", { rules: [{ from: [{ source: { ipBlocks: ["10.244.1.20", "10.1.0.0/16"], notIpBlocks: ["10.1.2.0/24"] } }] }] })).policies;
    expect(allowed(ips, { ip: "10.244.1.20" })).toBe(true);
    expect(allowed(ips, { ip: "10.244.1.21" })).toBe(false);
    expect(allowed(ips, { ip: "10.1.9.9" })).toBe(true);
    expect(allowed(ips, { ip: "10.1.2.9" })).toBe(false);
    const ports = run(ap("p", { action: "DENY", rules: [{ to: [{ operation: { notPorts: ["8080"] } }] }] })).policies;
    expect(allowed(ports, { port: 8080 })).toBe(true);
    expect(allowed(ports, { port: 9090 })).toBe(false);
  });

  test("from, to and when are ANDed; entries of from (and of to) are ORed; rules are ORed", () => {
    const { policies } = run(
      ap("p", {
        rules: [
          {
            from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }, { source: { namespaces: ["prod"] } }],
            to: [{ operation: { ports: ["8080"] } }],
            when: [{ key: "source.ip", values: ["10.244.0.0/16"] }, { key: "destination.port", notValues: ["9999"] }],
          },
          { from: [{ source: { principals: ["cluster.local/ns/admin/sa/ops"] } }] },
        ],
      }),
    );
    expect(allowed(policies, { from: "default/sleep", port: 8080 })).toBe(true);
    expect(allowed(policies, { from: "prod/anything", port: 8080 })).toBe(true);
    expect(allowed(policies, { from: "default/sleep", port: 8081 })).toBe(false);
    expect(allowed(policies, { from: "default/sleep", port: 8080, ip: "192.168.1.1" })).toBe(false);
    expect(allowed(policies, { from: "admin/ops", port: 9999 })).toBe(true);
    expect(policies[0]!.rules[0]).toHaveLength(4);
  });

  test("HTTP attributes in an ALLOW: that rule is dropped (more restrictive), the others stay, and it is reported", () => {
    const { policies, problems } = run(
      ap("p", {
        rules: [
          { from: [{ source: { namespaces: ["default"] } }], to: [{ operation: { methods: ["GET"], ports: ["8080"] } }] },
          { from: [{ source: { namespaces: ["prod"] } }] },
          { when: [{ key: "request.headers[x-user]", values: ["alice"] }] },
        ],
      }),
    );
    expect(allowed(policies, { from: "default/sleep" })).toBe(false);
    expect(allowed(policies, { from: "prod/a" })).toBe(true);
    expect(problems.map((p) => p.reason)).toEqual([
      "ztunnel does not support HTTP attributes (found: to.operation.methods, when request.headers[x-user]); a waypoint enforces those. Within an ALLOW policy, rules matching HTTP attributes are omitted: more restrictive than written.",
    ]);
  });

  test("HTTP attributes in a DENY: enforced without them (broader); an entry with nothing else left matches nothing", () => {
    const broader = run(ap("p", { action: "DENY", rules: [{ to: [{ operation: { ports: ["8080"], paths: ["/admin"] } }] }] }));
    expect(allowed(broader.policies, { port: 8080 })).toBe(false);
    expect(allowed(broader.policies, { port: 9090 })).toBe(true);
    expect(broader.problems[0]!.reason).toMatch(/DENY policy is enforced without the HTTP conditions/);
    const nothing = run(ap("p", { action: "DENY", rules: [{ to: [{ operation: { methods: ["DELETE"] } }] }, { from: [{ source: { requestPrincipals: ["*"] } }] }, { when: [{ key: "request.auth.claims[iss]", values: ["x"] }] }] }));
    expect(allowed(nothing.policies, {})).toBe(true);
  });

  test("scope: no selector is the namespace's; in the root namespace, mesh-wide; a root selector selects in every namespace", () => {
    const deny = { action: "DENY", rules: [{}] };
    expect(run(ap("ns", deny)).policies[0]!.scope).toBe("Namespace");
    expect(allowed(run(ap("ns", deny)).policies, { to: OTHER })).toBe(true);
    const global = run(ap("g", deny, { ns: "istio-system" })).policies;
    expect(global[0]!.scope).toBe("Global");
    expect(allowed(global, { to: ECHO })).toBe(false);
    expect(allowed(global, { to: OTHER })).toBe(false);
    const selected = run(ap("s", { ...deny, selector: { matchLabels: { app: "echo" } } }, { ns: "istio-system" })).policies;
    expect(allowed(selected, { to: OTHER })).toBe(false);
    const unselected = run(ap("s", { ...deny, selector: { matchLabels: { app: "nope" } } }, { ns: "istio-system" })).policies;
    expect(allowed(unselected, { to: OTHER })).toBe(true);
    const local = run(ap("s", { ...deny, selector: { matchLabels: { app: "nope" } } })).policies;
    expect(local[0]!.scope).toBe("WorkloadSelector");
    expect(allowed(local, { to: ECHO })).toBe(true);
  });

  test("not for ztunnel, skipped and reported: targetRefs, AUDIT, CUSTOM, a selector with no labels; the others still apply", () => {
    const { policies, problems } = run(
      ap("waypoint", { targetRefs: [{ kind: "Service", name: "echo" }], action: "DENY", rules: [{}] }),
      ap("audit", { action: "AUDIT", rules: [{}] }),
      ap("custom", { action: "CUSTOM", provider: { name: "ext" }, rules: [{}] }),
      ap("empty-selector", { selector: {}, action: "DENY", rules: [{}] }),
      ap("deny-9999", { action: "DENY", rules: [{ to: [{ operation: { ports: ["9999"] } }] }] }),
    );
    expect(policies.map((p) => p.name)).toEqual(["deny-9999"]);
    expect(problems.map((p) => [p.name, p.reason])).toEqual([
      ["waypoint", "it has targetRef(s): a waypoint enforces it, not ztunnel; skipped"],
      ["audit", "ztunnel does not support the AUDIT action; skipped"],
      ["custom", "ztunnel does not support the CUSTOM action; skipped"],
      ["empty-selector", "its selector has no matchLabels: it selects no workload; skipped"],
    ]);
  });

  test("istio.io/dry-run: a boolean makes it dry-run (logged, never deciding); anything else is enforced and reported", () => {
    const dry = run(ap("p", { action: "DENY", rules: [{}] }, { annotations: { "istio.io/dry-run": "true" } }));
    expect(dry.policies[0]!.dryRun).toBe(true);
    expect(allowed(dry.policies)).toBe(true);
    const bad = run(ap("p", { action: "DENY", rules: [{}] }, { annotations: { "istio.io/dry-run": "yes" } }));
    expect(bad.policies[0]!.dryRun).toBe(false);
    expect(allowed(bad.policies)).toBe(false);
    expect(bad.problems[0]!.reason).toMatch(/"yes" is not a boolean; the policy is enforced/);
  });

  test("values Istio drops are dropped and reported; an ALLOW whose only entry lost them matches nothing", () => {
    const { policies, problems } = run(ap("p", { rules: [{ from: [{ source: { ipBlocks: ["not-an-ip"] } }], to: [{ operation: { ports: ["http"] } }] }] }));
    expect(allowed(policies)).toBe(false);
    expect(problems.map((p) => p.reason)).toEqual(['port "http" is not a number from 0 to 65535; left out (as Istio does)', '"not-an-ip" is not an IP or CIDR; left out (as Istio does)']);
  });

  test("a malformed object (a CRD without a schema takes anything) is enforced closed and reported, and nothing throws", () => {
    const allow = run(ap("bad-allow", { action: "ALLOW", rules: { from: [] } }));
    expect(allowed(allow.policies)).toBe(false);
    expect(allow.problems[0]!.reason).toBe("spec.rules is not a list; enforced as an ALLOW that allows nothing until it is fixed");
    const deny = run(ap("bad-deny", { action: "DENY", rules: [{ from: { source: { principals: ["x"] } } }] }));
    expect(allowed(deny.policies)).toBe(false);
    expect(deny.problems[0]!.reason).toBe("spec.rules[0].from is not a list; enforced as a DENY of everything until it is fixed");
    const values = run(ap("bad-values", { action: "DENY", rules: [{ to: [{ operation: { ports: "8080" } }] }] }));
    expect(values.problems[0]!.reason).toMatch(/^spec\.rules\[0\]\.to\[0\]\.operation\.ports is not a list of strings/);
    const selector = run(ap("bad-selector", { action: "ALLOW", selector: ["app"], rules: [{}] }));
    expect(selector.problems[0]!.reason).toMatch(/^spec\.selector is not \{matchLabels/);
  });

  // A CRD that preserves unknown fields (the kind overlay's) hands the agent typos that
  // Istio's own CRD would drop. Each case: the spec, connections with the decision expected,
  // and the reports.
  const ALLOW_LEFT_OUT = "the rule is left out of this ALLOW policy: more restrictive than written";
  const DENY_IGNORED = "ignored: the DENY rule is enforced without that condition, denying more than written";
  const unknownFields: { name: string; spec: Record<string, unknown>; decisions: [Conn, boolean][]; problems: string[] }[] = [
    {
      name: "ALLOW, a typo at rule level (`form:`): the rule is dropped, not read as {} (allow-all)",
      spec: { rules: [{ form: [{ source: { namespaces: ["prod"] } }] }] },
      decisions: [[{ from: "default/sleep" }, false], [{ from: "prod/a" }, false]],
      problems: [`spec.rules[0].form is not a field of AuthorizationPolicy; ${ALLOW_LEFT_OUT}`],
    },
    {
      name: "ALLOW, an unknown key in from.source: that rule is dropped, the other rule stays",
      spec: {
        rules: [
          { from: [{ source: { namespaces: ["prod"], notPrincipal: ["cluster.local/ns/prod/sa/evil"] } }] },
          { from: [{ source: { namespaces: ["admin"] } }] },
        ],
      },
      decisions: [[{ from: "prod/evil" }, false], [{ from: "prod/a" }, false], [{ from: "admin/a" }, true]],
      problems: [`spec.rules[0].from[0].source.notPrincipal is not a field of AuthorizationPolicy; ${ALLOW_LEFT_OUT}`],
    },
    {
      name: "ALLOW, unknown keys in a to entry, in to.operation and in a when condition",
      spec: {
        rules: [
          { from: [{ source: { namespaces: ["prod"] } }], to: [{ operation: { ports: ["8080"] }, sni: "x" }] },
          { from: [{ source: { namespaces: ["prod"] } }], to: [{ operation: { ports: ["8080"], notPort: ["8080"] } }] },
          { from: [{ source: { namespaces: ["prod"] } }], when: [{ key: "source.ip", values: ["10.244.0.0/16"], notValue: ["10.244.1.20"] }] },
        ],
      },
      decisions: [[{ from: "prod/a", port: 8080 }, false]],
      problems: [
        `spec.rules[0].to[0].sni is not a field of AuthorizationPolicy; ${ALLOW_LEFT_OUT}`,
        `spec.rules[1].to[0].operation.notPort is not a field of AuthorizationPolicy; ${ALLOW_LEFT_OUT}`,
        `spec.rules[2].when[0].notValue is not a field of AuthorizationPolicy; ${ALLOW_LEFT_OUT}`,
      ],
    },
    {
      name: "DENY, a typo at rule level: the rule denies everything",
      spec: { action: "DENY", rules: [{ form: [{ source: { namespaces: ["prod"] } }] }] },
      decisions: [[{ from: "default/sleep" }, false], [{ from: "prod/a" }, false]],
      problems: [`spec.rules[0].form is not a field of AuthorizationPolicy; ${DENY_IGNORED}`],
    },
    {
      name: "DENY, an entry of nothing but unknown fields matches every connection (read as empty it would match none)",
      spec: { action: "DENY", rules: [{ from: [{ source: { namespace: ["prod"] } }], to: [{ operation: { ports: ["8080"] } }] }, { from: [{ sourc: { namespaces: ["admin"] } }], to: [{ operation: { ports: ["9090"] } }] }] },
      decisions: [[{ from: "default/sleep", port: 8080 }, false], [{ from: "default/sleep", port: 9090 }, false], [{ from: "default/sleep", port: 7070 }, true]],
      problems: [`spec.rules[0].from[0].source.namespace is not a field of AuthorizationPolicy; ${DENY_IGNORED}`, `spec.rules[1].from[0].sourc is not a field of AuthorizationPolicy; ${DENY_IGNORED}`],
    },
    {
      name: "DENY, an unknown key beside known ones is ignored: the known ones still apply",
      spec: { action: "DENY", rules: [{ to: [{ operation: { ports: ["8080"], methd: ["GET"] } }] }] },
      decisions: [[{ port: 8080 }, false], [{ port: 9090 }, true]],
      problems: [`spec.rules[0].to[0].operation.methd is not a field of AuthorizationPolicy; ${DENY_IGNORED}`],
    },
    {
      name: "DENY, a condition with its values misspelt holds",
      spec: { action: "DENY", rules: [{ when: [{ key: "source.ip", value: ["10.9.9.9"] }] }] },
      decisions: [[{ ip: "10.244.1.20" }, false]],
      problems: [`spec.rules[0].when[0].value is not a field of AuthorizationPolicy; ${DENY_IGNORED}`],
    },
    {
      name: "an unknown field of the selector is ignored: the rules apply as written, to more workloads",
      spec: { selector: { matchLabels: { app: "echo" }, matchExpressions: [] }, rules: [{ from: [{ source: { namespaces: ["prod"] } }] }] },
      decisions: [[{ from: "prod/a" }, true], [{ from: "default/sleep" }, false]],
      problems: ["spec.selector.matchExpressions is not a field of AuthorizationPolicy; ignored: the policy applies to more workloads, not fewer"],
    },
    {
      name: "a misspelt action (`actoin: DENY`) would make an ALLOW of it: enforced closed",
      spec: { actoin: "DENY", rules: [{ from: [{ source: { namespaces: ["prod"] } }] }] },
      decisions: [[{ from: "prod/a" }, false], [{ from: "default/sleep" }, false]],
      problems: ["spec.actoin is not a field of AuthorizationPolicy, so what the policy means is not known; enforced as an ALLOW that allows nothing until it is fixed"],
    },
    {
      name: "misspelt rules of a DENY (`rulez:`) would deny nothing: enforced closed",
      spec: { action: "DENY", rulez: [{ from: [{ source: { namespaces: ["prod"] } }] }] },
      decisions: [[{ from: "prod/a" }, false], [{ from: "default/sleep" }, false]],
      problems: ["spec.rulez is not a field of AuthorizationPolicy, so what the policy means is not known; enforced as a DENY of everything until it is fixed"],
    },
  ];
  test.each(unknownFields)("unknown fields: $name", ({ spec, decisions, problems }) => {
    const got = run(ap("p", spec));
    expect(decisions.map(([c]) => allowed(got.policies, c))).toEqual(decisions.map(([, want]) => want));
    expect(got.problems.map((p) => p.reason)).toEqual(problems);
  });

  test("service accounts match exactly, as in ztunnel: a `*` is no wildcard there", () => {
    const { policies, problems } = run(ap("p", { rules: [{ from: [{ source: { serviceAccounts: ["default/*"] } }] }] }));
    expect(allowed(policies, { from: "default/sleep" })).toBe(false);
    expect(problems[0]!.reason).toMatch(/matches service accounts exactly/);
  });
});
