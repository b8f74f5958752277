/** L4 authorization with Istio AuthorizationPolicy semantics (contract §6). */
import { cidrContains } from "./ip.js";
import type { Policy, PolicyMatch } from "./types.js";

export interface AuthzIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface AuthzConnection {
  /** The peer's verified identity; undefined for plaintext (no mTLS). */
  readonly srcIdentity?: AuthzIdentity | undefined;
  readonly srcIp: string;
  readonly dstIp: string;
  readonly dstPort: number;
}

/** `denied-on-error`: evaluating the policies threw; authorization fails closed. */
export type AuthzReason = "allowed-no-policy" | "allowed-by-policy" | "denied-by-policy" | "denied-no-allow-match" | "denied-on-error";

export interface AuthzDecision {
  readonly allow: boolean;
  /** "namespace/name" of the deciding policy (the first matching DENY, or the first matching ALLOW). */
  readonly policy?: string;
  readonly reason: AuthzReason;
  /**
   * Dry-run policies ("namespace/name") that matched the connection, plus, when enforcing
   * them would have denied it for want of a matching ALLOW, the dry-run ALLOW policies.
   */
  readonly dryRun: readonly string[];
  /** Present when a dry-run policy applies: the outcome had the dry-run policies been enforced. */
  readonly dryRunAllow?: boolean;
}

const SPIFFE = "spiffe://";

/** Exact, prefix `foo*`, suffix `*foo`, presence `*`. */
export function stringMatches(pattern: string, value: string): boolean {
  if (pattern === "*") return value !== "";
  if (pattern.endsWith("*")) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith("*")) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

/** Positive list: some entry matches; not* list: no entry matches. Empty or absent lists are ignored. */
function field<T>(pos: readonly T[] | undefined, neg: readonly T[] | undefined, test: (entry: T) => boolean): boolean {
  if (pos && pos.length > 0 && !pos.some(test)) return false;
  return !(neg && neg.length > 0 && neg.some(test));
}

export function matchMatches(m: PolicyMatch, c: AuthzConnection): boolean {
  const id = c.srcIdentity;
  const principal = id && `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  const principalTest = (e: string): boolean =>
    principal !== undefined && stringMatches(e.startsWith(SPIFFE) ? e.slice(SPIFFE.length) : e, principal);
  const nsTest = (e: string): boolean => id !== undefined && stringMatches(e, id.namespace);
  const saTest = (e: string): boolean =>
    id !== undefined && stringMatches(e, e.includes("/") ? `${id.namespace}/${id.serviceAccount}` : id.serviceAccount);
  return (
    field(m.principals, m.notPrincipals, principalTest) &&
    field(m.namespaces, m.notNamespaces, nsTest) &&
    field(m.serviceAccounts, m.notServiceAccounts, saTest) &&
    field(m.sourceIps, m.notSourceIps, (e) => cidrContains(e, c.srcIp)) &&
    field(m.destinationIps, m.notDestinationIps, (e) => cidrContains(e, c.dstIp)) &&
    field(m.destinationPorts, m.notDestinationPorts, (e) => e === c.dstPort)
  );
}

/** The index of the first rule of `p` that matches, or -1. A rule matches if all its clauses do; a clause if any of its matches does. */
export function matchingRule(p: Policy, c: AuthzConnection): number {
  return p.rules.findIndex((rule) => rule.every((clause) => clause.some((m) => matchMatches(m, c))));
}

/** One policy as `authorize` weighed it (filled only when asked for, by explain). */
export interface PolicyTrace {
  /** "namespace/name". */
  readonly policy: string;
  readonly action: Policy["action"];
  readonly dryRun: boolean;
  /** Discovery never delivered it: it stands in as an ALLOW that matches nothing. */
  readonly missing: boolean;
  /** The first rule (0-based) that matched, or -1. */
  readonly rule: number;
}

export function policyName(p: Policy): string {
  return `${p.namespace}/${p.name}`;
}

function decide(policies: readonly Policy[], matched: ReadonlySet<Policy>): Omit<AuthzDecision, "dryRun"> {
  const deny = policies.find((p) => p.action === "Deny" && matched.has(p));
  if (deny) return { allow: false, policy: policyName(deny), reason: "denied-by-policy" };
  const allows = policies.filter((p) => p.action === "Allow");
  if (allows.length === 0) return { allow: true, reason: "allowed-no-policy" };
  const allow = allows.find((p) => matched.has(p));
  if (allow) return { allow: true, policy: policyName(allow), reason: "allowed-by-policy" };
  return { allow: false, reason: "denied-no-allow-match" };
}

/**
 * Decides a connection against the policies that apply to its destination workload
 * (MeshStore.policiesFor): any matching DENY denies; with no ALLOW policy the connection
 * is allowed; otherwise a matching ALLOW is needed. Dry-run policies never decide.
 * With `trace`, each policy is also recorded there as it was weighed (explain's view of the
 * same decision: the data path passes none).
 */
export function authorize(policies: readonly Policy[], conn: AuthzConnection, trace?: PolicyTrace[]): AuthzDecision {
  const matched = new Set<Policy>();
  for (const p of policies) {
    const rule = matchingRule(p, conn);
    if (rule >= 0) matched.add(p);
    trace?.push({ policy: policyName(p), action: p.action, dryRun: p.dryRun, missing: p.missing === true, rule });
  }
  const enforced = policies.filter((p) => !p.dryRun);
  const actual = decide(enforced, matched);
  const dry = policies.filter((p) => p.dryRun);
  if (dry.length === 0) return { ...actual, dryRun: [] };
  const shadow = decide(policies, matched);
  const names = dry.filter((p) => matched.has(p) || (p.action === "Allow" && actual.allow && shadow.reason === "denied-no-allow-match"));
  return { ...actual, dryRun: names.map(policyName), dryRunAllow: shadow.allow };
}
