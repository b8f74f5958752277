/**
 * What a heap snapshot holds more than another, by kind and constructor (self sizes):
 *
 *   node bench/dist/heap-diff.js base.heapsnapshot held.heapsnapshot [connections] [rows]
 *
 * With `connections`, the figures are also per connection (count and bytes). Objects are
 * grouped by V8's node type and name: the constructor for objects, the function name for
 * closures, "(string)" for strings and so on.
 */
import { readFileSync } from "node:fs";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

function tally(file: string): Map<string, { count: number; bytes: number }> {
  const s = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const stride = fields.length;
  const [iType, iName, iSize] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [number, number, number];
  const types = s.snapshot.meta.node_types[0];
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < s.nodes.length; i += stride) {
    const type = types[s.nodes[i + iType]!]!;
    const name = s.strings[s.nodes[i + iName]!]!;
    const named = type === "object" || type === "closure" || type === "native" || type === "hidden" || type === "code";
    const key = named ? `${type}:${name.length > 60 ? `${name.slice(0, 60)}…` : name}` : `(${type})`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += s.nodes[i + iSize]!;
    out.set(key, e);
  }
  return out;
}

const [baseFile, heldFile, connsArg, rowsArg] = process.argv.slice(2);
if (!baseFile || !heldFile) {
  process.stderr.write("usage: node bench/dist/heap-diff.js base.heapsnapshot held.heapsnapshot [connections] [rows]\n");
  process.exit(2);
}
const conns = Number(connsArg) || 0;
const base = tally(baseFile);
const held = tally(heldFile);
const rows = [...held].map(([k, v]) => {
  const b = base.get(k) ?? { count: 0, bytes: 0 };
  return { k, count: v.count - b.count, bytes: v.bytes - b.bytes };
});
rows.sort((a, b) => b.bytes - a.bytes);
let total = 0;
for (const r of rows) total += r.bytes;
const per = (x: number): string => (conns ? (x / conns).toFixed(2).padStart(8) : "");
process.stdout.write(`${"bytes".padStart(11)} ${"count".padStart(8)} ${conns ? " B/conn  n/conn " : ""} what\n`);
for (const r of rows.slice(0, Number(rowsArg) || 40)) {
  process.stdout.write(`${String(r.bytes).padStart(11)} ${String(r.count).padStart(8)} ${conns ? `${per(r.bytes)}${per(r.count)} ` : ""} ${r.k}\n`);
}
process.stdout.write(`${String(total).padStart(11)} total${conns ? ` (${(total / conns / 1024).toFixed(2)} KiB per connection)` : ""}\n`);
