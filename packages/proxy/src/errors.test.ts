import { describe, expect, it } from "vitest";
import { CATALOG, ZtError, type ErrorCode } from "@zt/errors";
import { clientHandshakeError, ProxyError, toProxyError } from "./errors.js";

const coded = (code: string, message = "boom", extra: Record<string, unknown> = {}): Error => Object.assign(new Error(message), { code, ...extra });

describe("Node and OpenSSL errors become catalog codes at one edge", () => {
  it("certificate verify results are TLS failures, not connect failures", () => {
    for (const code of ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN", "DEPTH_ZERO_SELF_SIGNED_CERT", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]) {
      expect(toProxyError(coded(code))).toMatchObject({ code: "PEER_CERT_UNTRUSTED", flag: "TLS_FAILURE" });
    }
    for (const code of ["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]) expect(toProxyError(coded(code))).toMatchObject({ code: "PEER_CERT_EXPIRED", flag: "TLS_FAILURE" });
    expect(toProxyError(coded("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"))).toMatchObject({ code: "TLS_FAILURE", flag: "TLS_FAILURE" });
    expect(toProxyError(coded("ERR_TLS_CERT_ALTNAME_INVALID"))).toMatchObject({ code: "IDENTITY_MISMATCH", flag: "IDENTITY_ERROR" });
  });

  it("errno values get their codes; an unknown one never becomes a code", () => {
    expect(toProxyError(coded("ECONNREFUSED", "x", { address: "10.0.0.1", port: 80 }))).toMatchObject({ code: "UPSTREAM_REFUSED", flag: "CONNECT" });
    expect(toProxyError(coded("ETIMEDOUT"))).toMatchObject({ code: "UPSTREAM_TIMEOUT" });
    expect(toProxyError(coded("EHOSTUNREACH"))).toMatchObject({ code: "UPSTREAM_UNREACHABLE" });
    expect(toProxyError(coded("EPIPE"))).toMatchObject({ code: "CONNECTION_RESET", flag: "RESET" });
    expect(toProxyError(coded("EMFILE"))).toMatchObject({ code: "FD_EXHAUSTED", flag: "OVERLOAD" });
    const odd = toProxyError(coded("EWHATEVER", "strange"));
    expect(odd.code).toBe("INTERNAL");
    expect(odd.message).toContain("EWHATEVER");
    expect(toProxyError(coded("EWHATEVER"), "UPSTREAM_SOCKET_FAILED").code).toBe("UPSTREAM_SOCKET_FAILED");
    expect(toProxyError("a string").code).toBe("INTERNAL");
  });

  it("HTTP/2 errors of Node are named", () => {
    expect(toProxyError(coded("ERR_HTTP2_GOAWAY_SESSION")).code).toBe("HBONE_GOAWAY");
    expect(toProxyError(coded("ERR_HTTP2_STREAM_ERROR", "Stream closed with error code NGHTTP2_REFUSED_STREAM")).code).toBe("HBONE_STREAM_REFUSED");
    expect(toProxyError(coded("ERR_HTTP2_SESSION_ERROR")).code).toBe("HBONE_PROTOCOL_ERROR");
  });

  it("our own errors pass through; agent codes from other layers keep a connection code", () => {
    const e = new ProxyError("AUTHZ_DENIED", "no");
    expect(toProxyError(e)).toBe(e);
    expect(toProxyError(new ZtError("IDENTITY_MISMATCH", "x")).code).toBe("IDENTITY_MISMATCH");
    expect(toProxyError(new ZtError("CERT_ISSUE_FAILED", "x"), "CERT_UNAVAILABLE").code).toBe("CERT_UNAVAILABLE");
  });

  it("OpenSSL's handshake reasons on the server side", () => {
    expect(clientHandshakeError(Object.assign(new Error("x"), { reason: "wrong version number" }), "1.2.3.4:5").code).toBe("NOT_TLS");
    expect(clientHandshakeError(Object.assign(new Error("x"), { reason: "packet length too long" }), "1.2.3.4:5").code).toBe("NOT_TLS");
    expect(clientHandshakeError(Object.assign(new Error("x"), { reason: "peer did not return a certificate" }), "1.2.3.4:5").code).toBe("CLIENT_CERT_MISSING");
    expect(clientHandshakeError(new Error("other"), "1.2.3.4:5").code).toBe("TLS_FAILURE");
  });
});

describe("the catalog", () => {
  it("gives every connection code a flag, a level, and valid statuses", () => {
    for (const [code, spec] of Object.entries(CATALOG) as [ErrorCode, (typeof CATALOG)[ErrorCode]][]) {
      expect(["debug", "info", "warn", "error"]).toContain(spec.level);
      if (spec.hbone !== null) expect(spec.hbone, code).toBeGreaterThanOrEqual(400);
      if (spec.socks !== null) expect(spec.socks, code).toBeGreaterThanOrEqual(1);
      if (spec.flag === null) expect([spec.hbone, spec.socks], code).toEqual([null, null]);
    }
  });
});
