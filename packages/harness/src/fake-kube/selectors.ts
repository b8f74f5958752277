/** Label and field selectors, in the API server's syntax, for the fake API server. */

type Obj = { metadata?: { name?: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown>; status?: Record<string, unknown> };
export type Selector = (o: Obj) => boolean;

export class SelectorError extends Error {}

/** `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated (ANDed). */
export function labelSelector(raw: string | null): Selector {
  if (!raw) return () => true;
  const terms = splitTerms(raw).map(labelTerm);
  return (o) => {
    const labels = o.metadata?.labels ?? {};
    return terms.every((t) => t(labels));
  };
}

function labelTerm(term: string): (labels: Record<string, string>) => boolean {
  const set = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
  if (set) {
    const [, key, op, list] = set as unknown as [string, string, string, string];
    const values = list.split(",").map((v) => v.trim());
    return op === "in" ? (l) => key in l && values.includes(l[key]!) : (l) => !(key in l) || !values.includes(l[key]!);
  }
  const cmp = /^([^\s!=]+)\s*(==|=|!=)\s*([^\s]*)$/.exec(term);
  if (cmp) {
    const [, key, op, value] = cmp as unknown as [string, string, string, string];
    return op === "!=" ? (l) => l[key] !== value : (l) => l[key] === value;
  }
  if (/^![^\s!=]+$/.test(term)) return (l) => !(term.slice(1) in l);
  if (/^[^\s!=(),]+$/.test(term)) return (l) => term in l;
  throw new SelectorError(`unable to parse requirement: ${JSON.stringify(term)}`);
}

/** The field selectors the API server supports for the kinds served here. */
const FIELDS: Readonly<Record<string, (o: Obj) => string>> = {
  "metadata.name": (o) => o.metadata?.name ?? "",
  "metadata.namespace": (o) => o.metadata?.namespace ?? "",
  "spec.nodeName": (o) => String(o.spec?.["nodeName"] ?? ""),
  "status.phase": (o) => String(o.status?.["phase"] ?? ""),
};

export function fieldSelector(raw: string | null): Selector {
  if (!raw) return () => true;
  const terms = splitTerms(raw).map((term) => {
    const m = /^([^\s!=]+)\s*(==|=|!=)\s*([^\s]*)$/.exec(term);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(term)}`);
    const [, key, op, value] = m as unknown as [string, string, string, string];
    const get = FIELDS[key];
    if (!get) throw new SelectorError(`field label not supported: ${key}`);
    return op === "!=" ? (o: Obj) => get(o) !== value : (o: Obj) => get(o) === value;
  });
  return (o) => terms.every((t) => t(o));
}

/** Split on commas outside parentheses. */
function splitTerms(raw: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of raw) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
