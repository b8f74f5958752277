import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, formatTextLine, parseLogLevel } from "./logging.js";

/** Keeps every line written to it (pino writes whole lines). */
function lineSink(): Writable & { lines: string[]; json(): Record<string, unknown>[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split("\n").filter((l) => l !== ""));
      cb();
    },
  });
  return Object.assign(sink, { lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) });
}

describe("createLogger", () => {
  it("writes JSON lines with a level label and ISO time", () => {
    const sink = lineSink();
    const log = createLogger({ logFormat: "json", logLevel: "info" }, sink);
    log.child({ component: "proxy" }).info({ conn: 1 }, "hello");
    log.debug("hidden");
    const [line, ...rest] = sink.json();
    expect(rest).toEqual([]);
    expect(line).toMatchObject({ level: "info", component: "proxy", conn: 1, msg: "hello" });
    expect(String(line?.["time"])).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it("changes the level of existing children at runtime", () => {
    const sink = lineSink();
    const root = createLogger({ logFormat: "json", logLevel: "info" }, sink);
    const child = root.child({ component: "pool" }).child({ conn: 7 });
    child.debug("before");
    root.level = "debug";
    child.debug("after");
    root.level = "silent";
    child.error("silenced");
    expect(sink.json().map((l) => l["msg"])).toEqual(["after"]);
  });

  it("maps off to silence", () => {
    const sink = lineSink();
    const log = createLogger({ logFormat: "json", logLevel: "off" }, sink);
    log.error("nothing");
    expect(sink.lines).toEqual([]);
    expect(log.level).toBe("silent");
  });

  it("writes compact human lines in text format", () => {
    const sink = lineSink();
    const log = createLogger({ logFormat: "text", logLevel: "info" }, sink);
    log.child({ component: "access" }).warn({ "src.addr": "10.0.0.1:5000", bytes_sent: 3, error: "CONNECT: refused by peer" }, "connection failed");
    expect(sink.lines).toHaveLength(1);
    expect(sink.lines[0]).toMatch(
      /^\d{4}-\S+Z WARN  access  connection failed src\.addr=10\.0\.0\.1:5000 bytes_sent=3 error="CONNECT: refused by peer"$/,
    );
  });
});

describe("formatTextLine", () => {
  it("flattens nested objects and puts stacks on their own lines", () => {
    const out = formatTextLine(
      JSON.stringify({ level: "error", time: "T", msg: "boom", err: { type: "Error", message: "bad", stack: "Error: bad\n    at x" }, n: null }),
    );
    expect(out).toBe('T ERROR  boom err.type=Error err.message=bad n=null\n  Error: bad\n      at x\n');
  });
});

describe("parseLogLevel", () => {
  it.each([
    ["debug", "debug"],
    ["INFO", "info"],
    ["info,foo=debug", "info"],
    ["foo=debug,warn", "warn"],
    ["warning", "warn"],
    ["off", "off"],
    ["loud", undefined],
    ["foo=debug", undefined],
  ])("%j -> %j", (raw, level) => {
    expect(parseLogLevel(raw)).toBe(level);
  });
});
