/** The errors of reading the local config file, named the same on every thread. */
import { ZtError } from "@zt/errors";

export function unreadable(source: string, e: unknown): ZtError {
  const errno = (e as NodeJS.ErrnoException).code ?? "EUNKNOWN";
  const detail = e instanceof Error ? e.message : String(e);
  return new ZtError("CONFIG_FILE_UNREADABLE", `cannot read local config file ${source} (${errno}): ${detail}`, { cause: e });
}

export function tooLarge(source: string, size: number, maxBytes: number): ZtError {
  return new ZtError("CONFIG_FILE_TOO_LARGE", `local config file ${source} is ${formatBytes(size)} (${size} bytes), over the cap of ${formatBytes(maxBytes)} (${maxBytes} bytes); it was not read`);
}

export function formatBytes(n: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (n < 1024) return `${n} B`;
  let i = 0;
  for (n /= 1024; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${n.toFixed(1).replace(/\.0$/, "")} ${units[i]}`;
}
