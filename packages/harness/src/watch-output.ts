/**
 * Watches a child's output for a marker. Output arrives in chunks that cut anywhere: a
 * marker may be split over two chunks, or followed in its chunk by any number of later
 * lines (the agent writes its logs asynchronously, in batches). Keeps only what a split
 * marker needs from the previous chunk.
 */
export function outputWatcher(marker: string): (chunk: string) => boolean {
  let seen = false;
  let carry = "";
  return (chunk) => {
    if (seen) return true;
    const text = carry + chunk;
    seen = text.includes(marker);
    carry = text.slice(-(marker.length - 1));
    return seen;
  };
}
