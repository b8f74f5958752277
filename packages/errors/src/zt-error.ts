import { CATALOG, type ErrorCode, type ErrorSpec } from "./catalog.js";

/**
 * The project's error base: a stable `code` from the catalog and a message written for
 * the person reading the log. What the code means for a connection (flag, HBONE status,
 * SOCKS5 reply, log level) comes from the catalog, never from the thrower.
 */
export class ZtError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "ZtError";
  }

  get spec(): ErrorSpec {
    return CATALOG[this.code];
  }
}
