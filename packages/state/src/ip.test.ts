import { describe, expect, it } from "vitest";
import { cidrContains, formatHostPort, normalizeIp, parseCidr, parseHostPort } from "./ip.js";

describe("normalizeIp", () => {
  it.each([
    ["10.0.0.1", "10.0.0.1"],
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::FFFF:0102:0304", "1.2.3.4"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["::1", "::1"],
    ["fd00:0::0:5", "fd00::5"],
  ])("%s -> %s", (input, want) => {
    expect(normalizeIp(input)).toBe(want);
  });

  it.each(["", "10", "0xa.0.0.1", "010.0.0.1", "1.2.3.4.5", "300.1.1.1", " 1.2.3.4", "example.com", "1.2.3.4:80", ":::"])(
    "rejects %j",
    (input) => {
      expect(normalizeIp(input)).toBeUndefined();
    },
  );
});

describe("host:port", () => {
  it("parses IPv4 and bracketed IPv6", () => {
    expect(parseHostPort("1.2.3.4:80")).toEqual({ ip: "1.2.3.4", port: 80 });
    expect(parseHostPort("[::1]:15008")).toEqual({ ip: "::1", port: 15008 });
    expect(parseHostPort("[::ffff:10.0.0.1]:443")).toEqual({ ip: "10.0.0.1", port: 443 });
    expect(parseHostPort("[2001:DB8::1]:65535")).toEqual({ ip: "2001:db8::1", port: 65535 });
  });

  it.each(["1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:8a", "::1:80", "[::1]80", "[1.2.3.4]:80", "host:80", "[::1]:+80"])(
    "rejects %j",
    (input) => {
      expect(parseHostPort(input)).toBeUndefined();
    },
  );

  it("formats with brackets for IPv6", () => {
    expect(formatHostPort("1.2.3.4", 80)).toBe("1.2.3.4:80");
    expect(formatHostPort("fd00::1", 80)).toBe("[fd00::1]:80");
  });
});

describe("CIDR", () => {
  it("parses CIDRs and bare IPs", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual({ ip: "10.0.0.0", prefix: 8, kind: "ipv4" });
    expect(parseCidr("10.1.2.3")).toEqual({ ip: "10.1.2.3", prefix: 32, kind: "ipv4" });
    expect(parseCidr("FD00::/8")).toEqual({ ip: "fd00::", prefix: 8, kind: "ipv6" });
    expect(parseCidr("::1")).toEqual({ ip: "::1", prefix: 128, kind: "ipv6" });
    expect(parseCidr("::ffff:10.0.0.0/104")).toEqual({ ip: "10.0.0.0", prefix: 8, kind: "ipv4" });
  });

  it.each(["10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/a", "10/8", "x/8", ""])("rejects %j", (input) => {
    expect(parseCidr(input)).toBeUndefined();
  });

  it("tests containment", () => {
    expect(cidrContains("10.0.0.0/8", "10.200.1.1")).toBe(true);
    expect(cidrContains("10.0.0.0/8", "11.0.0.1")).toBe(false);
    expect(cidrContains("10.0.0.0/8", "::ffff:10.1.1.1")).toBe(true);
    expect(cidrContains("10.1.2.3", "10.1.2.3")).toBe(true);
    expect(cidrContains("10.1.2.3", "10.1.2.4")).toBe(false);
    expect(cidrContains("0.0.0.0/0", "1.2.3.4")).toBe(true);
    expect(cidrContains("0.0.0.0/0", "::1")).toBe(false);
    expect(cidrContains("fd00::/8", "fd12::1")).toBe(true);
    expect(cidrContains("fd00::/8", "fe80::1")).toBe(false);
    expect(cidrContains("::/0", "::1")).toBe(true);
    expect(cidrContains("10.0.0.0/8", "garbage")).toBe(false);
    expect(cidrContains("garbage", "10.0.0.1")).toBe(false);
    const parsed = parseCidr("192.168.0.0/16");
    expect(parsed && cidrContains(parsed, "192.168.4.4")).toBe(true);
  });
});
