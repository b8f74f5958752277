/** Minimal IPv4 helpers for the lab's addressing plan (dotted quads only). */

export function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return undefined;
  let n = 0;
  for (const part of m.slice(1)) {
    const v = Number(part);
    if (v > 255 || (part.length > 1 && part.startsWith("0"))) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => String(Math.floor(n / 2 ** s) % 256)).join(".");
}

/** True when `ip` lies inside `cidr` ("a.b.c.d/len"). */
export function inCidr(ip: string, cidr: string): boolean {
  const [base, lenText] = cidr.split("/");
  const a = parseIpv4(ip);
  const b = base === undefined ? undefined : parseIpv4(base);
  const len = Number(lenText);
  if (a === undefined || b === undefined || !Number.isInteger(len) || len < 0 || len > 32) return false;
  const size = 2 ** (32 - len);
  return Math.floor(a / size) === Math.floor(b / size);
}
