import type { Http2Stream } from "node:http2";

/**
 * Node keeps copies of what an HTTP/2 stream sent (its headers, its origin) for the stream's
 * whole life, under private symbols. A relayed stream lives as long as its connection, so an
 * idle connection would hold them all the while. `forgetCopies(names)` makes a function that
 * drops the fields whose symbol descriptions are `names`: the symbols are found on the first
 * stream and kept; when Node names them otherwise, nothing is found and nothing is dropped.
 */
export function forgetCopies(names: readonly string[]): (stream: Http2Stream) => void {
  let symbols: symbol[] | undefined;
  return (stream) => {
    symbols ??= Object.getOwnPropertySymbols(stream).filter((s) => names.includes(s.description ?? ""));
    for (const s of symbols) (stream as unknown as Record<symbol, unknown>)[s] = undefined;
  };
}
