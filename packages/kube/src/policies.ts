/**
 * AuthorizationPolicy (security.istio.io/v1) as Istio's control plane translates it for
 * ztunnel (istio/istio pilot/pkg/serviceregistry/ambient/authorization.go), so that an
 * ALLOW never allows more, and a DENY never denies less, than Istio would:
 * - scope: no selector -> Namespace (Global in the root namespace); a selector ->
 *   WorkloadSelector (in the root namespace: Global with that selector, every namespace);
 *   targetRef(s) -> a waypoint's, not ztunnel's: skipped;
 * - ALLOW and DENY; AUDIT and CUSTOM are not ztunnel's: skipped and reported;
 * - one rule -> one group of clauses: all `to` entries (OR), all `from` entries (OR), then
 *   one clause per `when` condition;
 * - HTTP attributes: a rule of an ALLOW that has any is dropped (more restrictive); a DENY
 *   keeps the rule without them (broader), and an entry left empty matches nothing;
 * - fields AuthorizationPolicy does not have (a CRD that preserves unknown fields, as the
 *   kind overlay's does, lets `form:` for `from:` through, where Istio's own CRD drops it):
 *   each is reported with its path. A rule of an ALLOW that has one, anywhere in it, is
 *   dropped (more restrictive: a rule `{form: …}` read without it would be `{}`, allow-all);
 *   in a DENY it is taken as a condition that holds (broader: denies more). One of the spec
 *   itself (`actoin:`, `rulez:`) may be the action or the rules misspelt, which would make
 *   another policy of it: it is enforced closed (ALLOW nothing, DENY everything). One of the
 *   selector is ignored (the policy applies to more workloads, not fewer).
 */
import { normalizeIp, parseCidr, type Policy, type PolicyMatch } from "@zt/state";
import type { AuthorizationPolicy, AuthorizationRule, ClusterNames, TranslationProblem } from "./objects.js";

type MutableMatch = { -readonly [K in keyof PolicyMatch]: string[] | number[] };

const SOURCE_L4 = new Set(["principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts", "ipBlocks", "notIpBlocks"]);
const SOURCE_HTTP = new Set(["requestPrincipals", "notRequestPrincipals", "remoteIpBlocks", "notRemoteIpBlocks"]);
const OPERATION_L4 = new Set(["ports", "notPorts"]);
const OPERATION_HTTP = new Set(["hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"]);
const SPEC = new Set(["selector", "action", "rules", "targetRef", "targetRefs", "provider"]);
const SELECTOR = new Set(["matchLabels"]);
const RULE = new Set(["from", "to", "when"]);
const CONDITION = new Set(["key", "values", "notValues"]);
const SOURCE = new Set([...SOURCE_L4, ...SOURCE_HTTP]);
const OPERATION = new Set([...OPERATION_L4, ...OPERATION_HTTP]);
const FROM_ENTRY = new Set(["source"]);
const TO_ENTRY = new Set(["operation"]);
const NOT_A_FIELD = "is not a field of AuthorizationPolicy";
/** `when` keys ztunnel enforces, and the match field each fills. */
const WHEN_L4: Readonly<Record<string, "sourceIps" | "namespaces" | "principals" | "destinationIps" | "destinationPorts">> = {
  "source.ip": "sourceIps",
  "source.namespace": "namespaces",
  "source.principal": "principals",
  "destination.ip": "destinationIps",
  "destination.port": "destinationPorts",
};
const NOT: Readonly<Record<string, keyof PolicyMatch>> = {
  sourceIps: "notSourceIps",
  namespaces: "notNamespaces",
  principals: "notPrincipals",
  destinationIps: "notDestinationIps",
  destinationPorts: "notDestinationPorts",
};

/** Go's strconv.ParseBool, which Istio applies to the dry-run annotation. */
function parseBool(v: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  return undefined;
}

export function translatePolicies(objects: ReadonlyMap<string, AuthorizationPolicy>, names: ClusterNames, problems: TranslationProblem[]): Policy[] {
  const out: Policy[] = [];
  for (const ap of objects.values()) {
    const report = (reason: string): void => void problems.push({ kind: "AuthorizationPolicy", namespace: ap.metadata?.namespace ?? "default", name: ap.metadata?.name ?? "", reason });
    let p: Policy | undefined;
    try {
      p = translatePolicy(ap, names, report);
    } catch (err) {
      // Never taken down by one object: it is enforced closed, and said so.
      p = failClosed(ap, names, `could not be translated (${err instanceof Error ? err.message : String(err)})`, report);
    }
    if (p) out.push(p);
  }
  return out.sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
}

export function translatePolicy(ap: AuthorizationPolicy, names: ClusterNames, report: (reason: string) => void): Policy | undefined {
  const name = ap.metadata?.name ?? "";
  const namespace = ap.metadata?.namespace ?? "default";
  const spec = ap.spec ?? {};
  const dryRunRaw = ap.metadata?.annotations?.["istio.io/dry-run"];
  let dryRun = false;
  if (dryRunRaw !== undefined) {
    const b = parseBool(dryRunRaw);
    if (b === undefined) report(`annotation istio.io/dry-run: ${JSON.stringify(dryRunRaw)} is not a boolean; the policy is enforced`);
    dryRun = b ?? false;
  }
  if (typeof spec.selector === "object" && spec.selector !== null && !Array.isArray(spec.selector)) {
    // Ignoring one widens the selection: an ALLOW then restricts more workloads, a DENY denies on more.
    for (const k of Object.keys(spec.selector)) if (!SELECTOR.has(k)) report(`spec.selector.${k} ${NOT_A_FIELD}; ignored: the policy applies to more workloads, not fewer`);
  }
  if (spec.targetRef !== undefined || (spec.targetRefs?.length ?? 0) > 0) {
    report("it has targetRef(s): a waypoint enforces it, not ztunnel; skipped");
    return undefined;
  }
  // A misspelt action or rules (`actoin: DENY`, `rulez:`) would turn the policy into another
  // one: what it means is not known, so it is enforced closed.
  const unknown = Object.keys(spec).filter((k) => !SPEC.has(k));
  if (unknown.length > 0) return failClosed(ap, names, `${unknown.map((k) => `spec.${k}`).join(", ")} ${unknown.length > 1 ? "are not fields" : "is not a field"} of AuthorizationPolicy, so what the policy means is not known`, report);
  const action = spec.action ?? "ALLOW";
  const bad = typeof action === "string" ? malformed(spec) : undefined;
  if (bad && (action === "ALLOW" || action === "DENY")) return failClosed(ap, names, bad, report);
  if (action !== "ALLOW" && action !== "DENY") {
    report(`ztunnel does not support the ${action} action; skipped`);
    return undefined;
  }
  const root = namespace === names.rootNamespace;
  let selector = new Map<string, string>();
  if (spec.selector !== undefined) {
    selector = new Map(Object.entries(spec.selector.matchLabels ?? {}));
    if (selector.size === 0) {
      report("its selector has no matchLabels: it selects no workload; skipped");
      return undefined;
    }
  }
  const http = new Set<string>();
  const rules: PolicyMatch[][][] = [];
  for (const [i, rule] of (spec.rules ?? []).entries()) {
    const g = translateRule(rule ?? {}, `spec.rules[${i}]`, namespace, action, http, report);
    if (g) rules.push(g);
  }
  if (http.size > 0) {
    const found = `ztunnel does not support HTTP attributes (found: ${[...http].sort().join(", ")}); a waypoint enforces those.`;
    report(action === "ALLOW" ? `${found} Within an ALLOW policy, rules matching HTTP attributes are omitted: more restrictive than written.` : `${found} The DENY policy is enforced without the HTTP conditions: more restrictive than written.`);
  }
  return {
    name,
    namespace,
    scope: selector.size > 0 ? (root ? "Global" : "WorkloadSelector") : root ? "Global" : "Namespace",
    action: action === "ALLOW" ? "Allow" : "Deny",
    dryRun,
    selector,
    rules,
  };
}

/**
 * The shape the API's schema would enforce (a CRD without a schema accepts anything): lists
 * are lists of objects, string fields lists of strings. Why not, or undefined.
 */
function malformed(spec: NonNullable<AuthorizationPolicy["spec"]>): string | undefined {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  const strings = (v: unknown): boolean => Array.isArray(v) && v.every((x) => typeof x === "string" || typeof x === "number");
  if (spec.selector !== undefined && (!isObj(spec.selector) || (spec.selector.matchLabels !== undefined && !isObj(spec.selector.matchLabels)))) return "spec.selector is not {matchLabels: {…}}";
  if (spec.rules === undefined) return undefined;
  if (!Array.isArray(spec.rules)) return "spec.rules is not a list";
  for (const [i, rule] of spec.rules.entries()) {
    if (!isObj(rule)) return `spec.rules[${i}] is not an object`;
    for (const [part, inner] of [["from", "source"], ["to", "operation"]] as const) {
      const list = rule[part];
      if (list === undefined) continue;
      if (!Array.isArray(list)) return `spec.rules[${i}].${part} is not a list`;
      for (const [j, entry] of list.entries()) {
        const body = isObj(entry) ? entry[inner] : undefined;
        if (!isObj(entry) || (body !== undefined && !isObj(body))) return `spec.rules[${i}].${part}[${j}].${inner} is not an object`;
        for (const [k, v] of Object.entries(body ?? {})) if (!strings(v)) return `spec.rules[${i}].${part}[${j}].${inner}.${k} is not a list of strings`;
      }
    }
    if (rule["when"] !== undefined) {
      if (!Array.isArray(rule["when"])) return `spec.rules[${i}].when is not a list`;
      for (const [j, w] of (rule["when"] as unknown[]).entries()) {
        if (!isObj(w) || typeof w["key"] !== "string" || (w["values"] !== undefined && !strings(w["values"])) || (w["notValues"] !== undefined && !strings(w["notValues"]))) return `spec.rules[${i}].when[${j}] is not {key, values, notValues}`;
      }
    }
  }
  return undefined;
}

/** A policy that cannot be read is enforced closed: an ALLOW allows nothing, a DENY denies everything, where it applies. */
function failClosed(ap: AuthorizationPolicy, names: ClusterNames, why: string, report: (reason: string) => void): Policy | undefined {
  const spec = ap.spec ?? {};
  const action = spec.action ?? "ALLOW";
  const labels = typeof spec.selector === "object" && spec.selector !== null && typeof spec.selector.matchLabels === "object" && spec.selector.matchLabels !== null ? spec.selector.matchLabels : {};
  if (action !== "ALLOW" && action !== "DENY") {
    report(`${why}; skipped`);
    return undefined;
  }
  const namespace = ap.metadata?.namespace ?? "default";
  const selector = new Map(Object.entries(labels).filter((e): e is [string, string] => typeof e[1] === "string"));
  const root = namespace === names.rootNamespace;
  report(`${why}; enforced as ${action === "ALLOW" ? "an ALLOW that allows nothing" : "a DENY of everything"} until it is fixed`);
  return {
    name: ap.metadata?.name ?? "",
    namespace,
    scope: selector.size > 0 ? (root ? "Global" : "WorkloadSelector") : root ? "Global" : "Namespace",
    action: action === "ALLOW" ? "Allow" : "Deny",
    dryRun: false,
    selector,
    rules: action === "ALLOW" ? [] : [[]],
  };
}

/**
 * One rule as a group of clauses; undefined when an ALLOW rule has HTTP attributes or a
 * field AuthorizationPolicy does not have (it is dropped). `at` is the rule's path.
 */
function translateRule(rule: AuthorizationRule, at: string, policyNs: string, action: string, http: Set<string>, report: (reason: string) => void): PolicyMatch[][] | undefined {
  const httpHere: string[] = [];
  const unknown: string[] = [];
  const clauses: PolicyMatch[][] = [];
  /** The keys of `o` not in `known`, noted as unknown; how many of them. */
  const extra = (o: object | undefined, known: ReadonlySet<string>, path: string): number => {
    const keys = Object.keys(o ?? {}).filter((k) => !known.has(k));
    for (const k of keys) unknown.push(`${path}.${k}`);
    return keys.length;
  };
  // In a DENY an unknown field is a condition taken to hold: an entry with nothing but
  // unknown fields matches every connection, where reading it as empty would match none.
  const push = (clause: PolicyMatch[], m: Partial<MutableMatch>, known: number, unknownHere: number): void => {
    if (Object.keys(m).length > 0) clause.push(m as PolicyMatch);
    else if (known === 0 && unknownHere > 0) clause.push({});
  };
  extra(rule, RULE, at);
  if (rule.to?.length) {
    const clause: PolicyMatch[] = [];
    for (const [j, t] of rule.to.entries()) {
      const m: Partial<MutableMatch> = {};
      const op = t?.operation ?? {};
      const inEntry = extra(t, TO_ENTRY, `${at}.to[${j}]`);
      const inOp = extra(op, OPERATION, `${at}.to[${j}].operation`);
      for (const [k, v] of Object.entries(op)) {
        if (OPERATION_HTTP.has(k)) httpHere.push(`to.operation.${k}`);
        else if (OPERATION_L4.has(k)) setPorts(m, k === "ports" ? "destinationPorts" : "notDestinationPorts", v, report);
      }
      push(clause, m, Object.keys(op).length - inOp, inOp + inEntry);
    }
    clauses.push(clause);
  }
  if (rule.from?.length) {
    const clause: PolicyMatch[] = [];
    for (const [j, f] of rule.from.entries()) {
      const m: Partial<MutableMatch> = {};
      const src = f?.source ?? {};
      const inEntry = extra(f, FROM_ENTRY, `${at}.from[${j}]`);
      const inSrc = extra(src, SOURCE, `${at}.from[${j}].source`);
      for (const [k, v] of Object.entries(src)) {
        if (SOURCE_HTTP.has(k)) httpHere.push(`from.source.${k}`);
        else if (SOURCE_L4.has(k)) setSource(m, k, v, policyNs, report);
      }
      push(clause, m, Object.keys(src).length - inSrc, inSrc + inEntry);
    }
    clauses.push(clause);
  }
  for (const [j, w] of (rule.when ?? []).entries()) {
    const key = w?.key ?? "";
    const field = WHEN_L4[key];
    const m: Partial<MutableMatch> = {};
    const inWhen = extra(w, CONDITION, `${at}.when[${j}]`);
    if (!field) httpHere.push(`when ${key}`);
    else {
      for (const [list, target] of [[w.values, field], [w.notValues, NOT[field]!]] as const) {
        if (!list?.length) continue;
        if (field === "destinationPorts") setPorts(m, target, list, report);
        else if (field === "sourceIps" || field === "destinationIps") setIps(m, target, list, report);
        else setStrings(m, target, list, report);
      }
    }
    const clause: PolicyMatch[] = [];
    // A condition's key is always there (malformed() sees to it): what is known of it is its values.
    if (field) push(clause, m, (w.values?.length ?? 0) + (w.notValues?.length ?? 0), inWhen);
    clauses.push(clause);
  }
  for (const h of httpHere) http.add(h);
  for (const path of unknown) {
    report(action === "ALLOW" ? `${path} ${NOT_A_FIELD}; the rule is left out of this ALLOW policy: more restrictive than written` : `${path} ${NOT_A_FIELD}; ignored: the DENY rule is enforced without that condition, denying more than written`);
  }
  if ((httpHere.length > 0 || unknown.length > 0) && action === "ALLOW") return undefined;
  return clauses;
}

function list(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

function setSource(m: Partial<MutableMatch>, k: string, v: unknown, policyNs: string, report: (reason: string) => void): void {
  const values = list(v);
  if (values.length === 0) return;
  switch (k) {
    case "ipBlocks":
    case "notIpBlocks":
      return setIps(m, k === "ipBlocks" ? "sourceIps" : "notSourceIps", values, report);
    case "serviceAccounts":
    case "notServiceAccounts":
      // A bare service account is one of the policy's namespace. ztunnel compares them exactly:
      // a `*` is a character there, never a wildcard (kept so: it matches no real account).
      (m as Record<string, string[]>)[k] = values.map((sa) => {
        const full = sa.includes("/") ? sa : `${policyNs}/${sa}`;
        if (!full.includes("*")) return full;
        report(`service account ${JSON.stringify(sa)}: ztunnel matches service accounts exactly, so "*" is no wildcard there`);
        return `\u0000${full}`;
      });
      return;
    default:
      return setStrings(m, k as keyof PolicyMatch, values, report);
  }
}

/** Principals and namespaces as written (exact, `x*`, `*x`, `*`). A `spiffe://` principal never matches in Istio: kept so. */
function setStrings(m: Partial<MutableMatch>, k: keyof PolicyMatch, values: readonly string[], report: (reason: string) => void): void {
  const out: string[] = [];
  for (const v of values) {
    if ((k === "principals" || k === "notPrincipals") && v.startsWith("spiffe://")) {
      report(`principal ${JSON.stringify(v)} is written with spiffe://, which Istio never matches (write trust-domain/ns/…/sa/…)`);
      out.push(`\u0000${v}`);
    } else out.push(v);
  }
  (m as Record<string, string[]>)[k] = [...((m as Record<string, string[]>)[k] ?? []), ...out];
}

function setIps(m: Partial<MutableMatch>, k: keyof PolicyMatch, values: readonly string[], report: (reason: string) => void): void {
  const out: string[] = [];
  for (const v of values) {
    const ip = normalizeIp(v);
    if (ip) out.push(ip.includes(":") ? `${ip}/128` : `${ip}/32`);
    else if (parseCidr(v)) out.push(v);
    else report(`${JSON.stringify(v)} is not an IP or CIDR; left out (as Istio does)`);
  }
  if (out.length > 0) (m as Record<string, string[]>)[k] = [...((m as Record<string, string[]>)[k] ?? []), ...out];
}

function setPorts(m: Partial<MutableMatch>, k: keyof PolicyMatch, v: unknown, report: (reason: string) => void): void {
  const out: number[] = [];
  for (const raw of Array.isArray(v) ? v : []) {
    const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (n >= 0 && n <= 65535) out.push(n);
    else report(`port ${JSON.stringify(raw)} is not a number from 0 to 65535; left out (as Istio does)`);
  }
  if (out.length > 0) (m as Record<string, number[]>)[k] = [...((m as Record<string, number[]>)[k] ?? []), ...out];
}
