import { ZtError } from "@zt/errors";

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

export class ConfigError extends ZtError<"CONFIG_INVALID"> {
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
