/**
 * Typed reading of parsed YAML with problem collection: every reader records what is
 * wrong (source, entry, field, value, reason) and returns a usable fallback, so that one
 * pass over a file finds all of its problems.
 */
import type { ConfigProblem } from "./errors.js";

export type Obj = Readonly<Record<string, unknown>>;

export function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

/** Absent: not there, or written with no value (YAML null). */
export function isAbsent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

export function showValue(v: unknown): string {
  if (v === undefined) return "<missing>";
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

export function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (isObj(v)) return "a mapping";
  return `a ${typeof v}`;
}

/** Field path of a map key: `ports[80]`, `labels["app"]`. */
export function keyPath(base: string, key: string): string {
  return /^[0-9]+$/.test(key) ? `${base}[${key}]` : `${base}[${JSON.stringify(key)}]`;
}

export class ProblemList {
  readonly problems: ConfigProblem[] = [];
  constructor(readonly source: string) {}
  add(entry: string, field: string, value: unknown, reason: string): void {
    this.problems.push({ source: this.source, entry, field, value: showValue(value), reason });
  }
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] ?? 0;
      const cost = a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1;
      row[j] = Math.min(cur + 1, (row[j - 1] ?? 0) + 1, prev + cost);
      prev = cur;
    }
  }
  return row[b.length] ?? 0;
}

/** The candidate closest to `value` (case-insensitive edit distance), when close enough to be a likely typo. */
export function closestMatch(value: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of candidates) {
    const d = distance(value, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(value.length / 3)) ? best : undefined;
}

export function unknownKeyReason(key: string, allowed: readonly string[]): string {
  const best = closestMatch(key, allowed);
  const hint = best !== undefined ? ` (did you mean "${best}"?)` : "";
  return `unknown key "${key}"${hint}; expected one of: ${allowed.join(", ")}`;
}

/** Parses a port given as an integer or a decimal string; undefined when out of [min, 65535]. */
export function toPort(v: unknown, min: number): number | undefined {
  const n = typeof v === "string" && /^[0-9]{1,5}$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) && n >= min && n <= 65535 ? n : undefined;
}

/** A map `servicePort -> targetPort` (ports 1..65535, targets 0..65535; 0 = same as the service port). */
export function readPortMap(p: ProblemList, entry: string, field: string, v: unknown): Map<number, number> {
  const out = new Map<number, number>();
  if (isAbsent(v)) return out;
  if (!isObj(v)) {
    p.add(entry, field, v, `must be a mapping of service port to target port, e.g. {80: 8080}; got ${typeName(v)}`);
    return out;
  }
  for (const [k, t] of Object.entries(v)) {
    const port = toPort(k, 1);
    const target = toPort(t, 0);
    if (port === undefined) p.add(entry, keyPath(field, k), k, "service port must be an integer 1..65535");
    if (target === undefined) p.add(entry, keyPath(field, k), t, "target port must be an integer 0..65535 (0 = same as the service port)");
    if (port !== undefined && target !== undefined) out.set(port, target);
  }
  return out;
}

/** Reads the fields of one mapping entry (e.g. `workloads[2]`), reporting unknown keys at once. */
export class EntryReader {
  constructor(
    readonly p: ProblemList,
    readonly entry: string,
    readonly obj: Obj,
    allowed: readonly string[],
    /** Prefix for field paths of nested mappings, e.g. "rules[0][1][2]." */
    readonly prefix = "",
  ) {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) p.add(entry, prefix + k, obj[k], unknownKeyReason(k, allowed));
    }
  }

  field(key: string): string {
    return this.prefix + key;
  }

  raw(key: string): unknown {
    return this.obj[key];
  }

  private bad(key: string, v: unknown, want: string): void {
    this.p.add(this.entry, this.field(key), v, `must be ${want}; got ${typeName(v)}`);
  }

  /** A string; `def` when absent. Wrong type is reported and yields `def`. */
  string(key: string, def: string): string;
  string(key: string): string | undefined;
  string(key: string, def?: string): string | undefined {
    const v = this.obj[key];
    if (isAbsent(v)) return def;
    if (typeof v !== "string") {
      this.bad(key, v, "a string");
      return def;
    }
    return v;
  }

  /** A non-empty string that must be present. */
  required(key: string): string {
    const v = this.obj[key];
    if (isAbsent(v) || v === "") {
      this.p.add(this.entry, this.field(key), v, `"${key}" is required`);
      return "";
    }
    return this.string(key) ?? "";
  }

  oneOf<T extends string>(key: string, values: readonly T[], def: T): T {
    const v = this.obj[key];
    if (isAbsent(v)) return def;
    const hit = values.find((x) => x === v);
    if (hit === undefined) this.p.add(this.entry, this.field(key), v, `must be one of ${values.join(", ")}`);
    return hit ?? def;
  }

  boolean(key: string, def: boolean): boolean {
    const v = this.obj[key];
    if (isAbsent(v)) return def;
    if (typeof v !== "boolean") {
      this.bad(key, v, "true or false");
      return def;
    }
    return v;
  }

  integer(key: string, min: number, max: number, def: number): number {
    const v = this.obj[key];
    if (isAbsent(v)) return def;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      this.p.add(this.entry, this.field(key), v, `must be an integer ${min}..${max}`);
      return def;
    }
    return v;
  }

  /** A list; undefined when absent or of the wrong type (reported). */
  list(key: string): readonly unknown[] | undefined {
    const v = this.obj[key];
    if (isAbsent(v)) return undefined;
    if (!Array.isArray(v)) {
      this.bad(key, v, "a list");
      return undefined;
    }
    return v;
  }

  /** A list of strings, each checked (and possibly transformed) by `check`, which returns a reason on failure. */
  stringList(key: string, check?: (s: string) => { value: string } | { reason: string }): string[] | undefined {
    const list = this.list(key);
    if (list === undefined) return undefined;
    const out: string[] = [];
    list.forEach((v, i) => {
      const f = `${this.field(key)}[${i}]`;
      if (typeof v !== "string") return this.p.add(this.entry, f, v, `must be a string; got ${typeName(v)}`);
      const r = check ? check(v) : { value: v };
      if ("reason" in r) this.p.add(this.entry, f, v, r.reason);
      else out.push(r.value);
    });
    return out;
  }

  /** A mapping of string to string (labels, selectors). */
  stringMap(key: string): Map<string, string> {
    const out = new Map<string, string>();
    const v = this.obj[key];
    if (isAbsent(v)) return out;
    if (!isObj(v)) {
      this.bad(key, v, "a mapping of string to string");
      return out;
    }
    for (const [k, s] of Object.entries(v)) {
      if (typeof s === "string") out.set(k, s);
      else this.p.add(this.entry, keyPath(this.field(key), k), s, `must be a string (quote it); got ${typeName(s)}`);
    }
    return out;
  }

  portMap(key: string): Map<number, number> {
    return readPortMap(this.p, this.entry, this.field(key), this.obj[key]);
  }
}
