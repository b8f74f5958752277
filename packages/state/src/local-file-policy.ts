/** Reading `policies[]` entries of the local config file. */
import { EntryReader, isObj, type Obj, type ProblemList, typeName } from "./config-reader.js";
import { formatCidr, parseCidr } from "./ip.js";
import type { Policy, PolicyAction, PolicyMatch, PolicyScope } from "./types.js";

const POLICY_KEYS = ["name", "namespace", "scope", "action", "dryRun", "selector", "rules"] as const;
const SCOPES: readonly PolicyScope[] = ["Global", "Namespace", "WorkloadSelector"];
const ACTIONS: readonly PolicyAction[] = ["Allow", "Deny"];

type StringField = "principals" | "namespaces" | "serviceAccounts";
type CidrField = "sourceIps" | "destinationIps";
type Not<K extends string> = `not${Capitalize<K>}`;
type MatchKey = keyof PolicyMatch;

const STRING_FIELDS: readonly (StringField | Not<StringField>)[] = [
  "principals",
  "notPrincipals",
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
];
const CIDR_FIELDS: readonly (CidrField | Not<CidrField>)[] = ["sourceIps", "notSourceIps", "destinationIps", "notDestinationIps"];
const PORT_FIELDS = ["destinationPorts", "notDestinationPorts"] as const;
const MATCH_KEYS: readonly MatchKey[] = [...STRING_FIELDS, ...CIDR_FIELDS, ...PORT_FIELDS];

/** Exact, prefix `foo*`, suffix `*foo` or presence `*`; a `*` anywhere else is a mistake. */
export function checkStringMatch(s: string): { value: string } | { reason: string } {
  if (s === "") return { reason: "must not be empty (use \"*\" for presence)" };
  if (s === "*") return { value: s };
  const inner = s.slice(1, -1);
  if (inner.includes("*") || (s.startsWith("*") && s.endsWith("*"))) {
    return { reason: 'only exact, prefix ("foo*"), suffix ("*foo") or presence ("*") matches are supported' };
  }
  return { value: s };
}

function checkCidr(s: string): { value: string } | { reason: string } {
  const c = parseCidr(s);
  if (!c) return { reason: "must be an IP address or a CIDR such as 10.0.0.0/8 or fd00::/8" };
  return { value: s.includes("/") ? formatCidr(c) : c.ip };
}

function readMatch(p: ProblemList, entry: string, path: string, obj: Obj): PolicyMatch {
  const r = new EntryReader(p, entry, obj, MATCH_KEYS, `${path}.`);
  const m: { -readonly [K in MatchKey]?: PolicyMatch[K] } = {};
  for (const k of STRING_FIELDS) {
    const v = r.stringList(k, checkStringMatch);
    if (v !== undefined) m[k] = v;
  }
  for (const k of CIDR_FIELDS) {
    const v = r.stringList(k, checkCidr);
    if (v !== undefined) m[k] = v;
  }
  for (const k of PORT_FIELDS) {
    const list = r.list(k);
    if (list === undefined) continue;
    const ports: number[] = [];
    list.forEach((v, i) => {
      if (typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 65535) ports.push(v);
      else p.add(entry, `${r.field(k)}[${i}]`, v, "must be an integer port 1..65535");
    });
    m[k] = ports;
  }
  return m;
}

/** Reads `rules: [[[match, ...], ...], ...]` (rules OR, clauses AND, matches OR). */
function readRules(r: EntryReader): PolicyMatch[][][] {
  const rules = r.list("rules") ?? [];
  const out: PolicyMatch[][][] = [];
  const listAt = (v: unknown, path: string, what: string): readonly unknown[] => {
    if (Array.isArray(v)) return v;
    r.p.add(r.entry, path, v, `must be a list of ${what}; got ${typeName(v)}`);
    return [];
  };
  rules.forEach((rule, i) => {
    const clauses: PolicyMatch[][] = [];
    listAt(rule, `rules[${i}]`, "clauses (each a list of matches)").forEach((clause, j) => {
      const matches: PolicyMatch[] = [];
      listAt(clause, `rules[${i}][${j}]`, "match mappings").forEach((m, k) => {
        const path = `rules[${i}][${j}][${k}]`;
        if (isObj(m)) matches.push(readMatch(r.p, r.entry, path, m));
        else r.p.add(r.entry, path, m, `must be a mapping of match fields (${MATCH_KEYS.join(", ")}); got ${typeName(m)}`);
      });
      clauses.push(matches);
    });
    out.push(clauses);
  });
  return out;
}

export function readPolicy(p: ProblemList, entry: string, obj: Obj): Policy {
  const r = new EntryReader(p, entry, obj, POLICY_KEYS);
  const scope = r.oneOf("scope", SCOPES, "Namespace");
  const selector = r.stringMap("selector");
  const scopeValid = r.raw("scope") === undefined || r.raw("scope") === null || r.raw("scope") === scope;
  if (selector.size > 0 && scopeValid && scope !== "WorkloadSelector") {
    p.add(entry, "selector", r.raw("selector"), `a selector is only used with scope WorkloadSelector (scope is ${scope}); without it the policy would apply to the whole ${scope === "Global" ? "mesh" : "namespace"}`);
  }
  return {
    name: r.required("name"),
    namespace: r.required("namespace"),
    scope,
    action: r.oneOf("action", ACTIONS, "Allow"),
    dryRun: r.boolean("dryRun", false),
    selector,
    rules: readRules(r),
  };
}
