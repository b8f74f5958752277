/**
 * The project's error base: every error an operator may see carries a stable
 * `code` (SCREAMING_SNAKE, never renamed once shipped) and a message written
 * for the person reading the log.
 */
export class ZtError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "ZtError";
  }
}

/** One problem in a configuration source, named precisely enough to fix it. */
export interface ConfigProblem {
  /** File path or "env". */
  readonly source: string;
  /** Entry, e.g. "workloads[2]" or the variable name. */
  readonly entry: string;
  /** Field within the entry, e.g. "workloadIps[0]"; empty for a whole entry. */
  readonly field: string;
  readonly value: string;
  readonly reason: string;
}

export class ConfigError extends ZtError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super("CONFIG_INVALID", formatProblems(problems));
    this.problems = problems;
    this.name = "ConfigError";
  }
}

export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems
    .map((p) => {
      const where = p.field ? `${p.entry}.${p.field}` : p.entry;
      return `${p.source}: ${where}: ${p.reason} (value: ${p.value})`;
    })
    .join("\n");
}
