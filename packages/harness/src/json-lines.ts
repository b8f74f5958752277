import type { Readable } from "node:stream";

/** Each line a stream writes, parsed as JSON (a line that is not JSON comes as `{ msg: line }`): how the harness reads its processes' logs. */
export function onJsonLines(stream: Readable, each: (line: Record<string, unknown>) => void): void {
  let partial = "";
  stream.on("data", (chunk: Buffer) => {
    partial += chunk.toString();
    let i: number;
    while ((i = partial.indexOf("\n")) >= 0) {
      const line = partial.slice(0, i);
      partial = partial.slice(i + 1);
      try {
        each(JSON.parse(line) as Record<string, unknown>);
      } catch {
        each({ msg: line });
      }
    }
  });
}
