/**
 * The root logger. One pino instance for the whole agent; components take children
 * (`logger.child({ component })`). JSON by default; "text" is a compact human line format
 * produced in-process (no worker thread); both go to stdout asynchronously. Children
 * created without their own level follow the root, so `logger.level = "debug"` (admin
 * /logging) changes every component at once.
 */
import pino, { type Logger } from "pino";

/** Operator-facing levels ("off" silences everything). */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "off";
export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error", "off"];

/**
 * A level as an operator writes it: "debug", or RUST_LOG style "info,proxy=debug"
 * (the first bare level wins; per-target directives are ignored). Case-insensitive;
 * "warning", "fatal" and pino's "silent" are accepted as aliases. Undefined when invalid.
 */
export function parseLogLevel(raw: string): LogLevel | undefined {
  for (const part of raw.split(",")) {
    const p = part.trim().toLowerCase();
    if (p === "" || p.includes("=")) continue;
    if (p === "warning") return "warn";
    if (p === "fatal") return "error";
    if (p === "silent") return "off";
    return LOG_LEVELS.find((l) => l === p);
  }
  return undefined;
}

/** The pino level name for an operator level. */
export function pinoLevel(level: LogLevel): string {
  return level === "off" ? "silent" : level;
}

/** The operator level for pino's current level name. */
export function operatorLevel(pinoName: string): string {
  return pinoName === "silent" ? "off" : pinoName;
}

export interface LoggingConfig {
  readonly logFormat: "json" | "text";
  readonly logLevel: LogLevel;
}

/** Log bytes waiting for a slow stdout reader before new lines are dropped (and counted). */
const MAX_PENDING_LOG_BYTES = 16 * 1024 * 1024;
let dropped = 0;

/** Log lines dropped because stdout's reader fell more than 16 MiB behind. */
export function droppedLogLines(): number {
  return dropped;
}

/**
 * stdout written asynchronously (pino's SonicBoom): a slow or stuck log reader never
 * blocks the data path. Up to 16 MiB wait for it; past that, new lines are dropped and
 * counted. At a normal exit (and an uncaught error that exits) what is pending is flushed
 * synchronously; after SIGKILL or an OOM kill, what had not reached the pipe is lost.
 */
function stdout(): pino.DestinationStream {
  const d = pino.destination({ dest: 1, sync: false, maxLength: MAX_PENDING_LOG_BYTES });
  d.on("drop", () => void dropped++);
  return d;
}

/** One root logger writing to `destination` (stdout by default, asynchronously). */
export function createLogger(config: LoggingConfig, destination?: NodeJS.WritableStream): Logger {
  const options: pino.LoggerOptions = {
    level: pinoLevel(config.logLevel),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const out: pino.DestinationStream = destination ?? stdout();
  if (config.logFormat === "json") return pino(options, out);
  return pino({ ...options, base: null }, { write: (line: string) => void out.write(formatTextLine(line)) });
}

const LEVEL_TAGS: Readonly<Record<string, string>> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};
const HEAD_KEYS = new Set(["time", "level", "msg", "component", "pid", "hostname"]);

/** `2025-01-01T00:00:00.000Z INFO  access  connection complete src.addr=1.2.3.4:5 ...`. */
export function formatTextLine(jsonLine: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine;
  }
  const level = String(rec["level"] ?? "");
  let line = `${String(rec["time"] ?? "")} ${LEVEL_TAGS[level] ?? level.toUpperCase()}`;
  if (typeof rec["component"] === "string") line += ` ${rec["component"]}`;
  if (rec["msg"] !== undefined) line += `  ${String(rec["msg"])}`;
  let stack = "";
  const fields: string[] = [];
  const walk = (prefix: string, v: unknown): void => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (k === "stack" && typeof x === "string") stack += `\n  ${x.replaceAll("\n", "\n  ")}`;
        else walk(prefix ? `${prefix}.${k}` : k, x);
      }
      return;
    }
    fields.push(`${prefix}=${formatValue(v)}`);
  };
  for (const [k, v] of Object.entries(rec)) if (!HEAD_KEYS.has(k)) walk(k, v);
  if (fields.length > 0) line += ` ${fields.join(" ")}`;
  return `${line}${stack}\n`;
}

function formatValue(v: unknown): string {
  if (typeof v === "string") return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  return JSON.stringify(v);
}
