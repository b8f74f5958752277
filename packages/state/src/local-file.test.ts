import { describe, expect, it } from "vitest";
import { ConfigError, type ConfigProblem } from "./errors.js";
import { parseLocalConfig } from "./local-file.js";

const SRC = "/etc/ztunnel/local.yaml";
const D = { trustDomain: "td.local", clusterId: "c1" };
const parse = (text: string) => parseLocalConfig(text, SRC, D);

function problemsOf(text: string): readonly ConfigProblem[] {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const err = e as ConfigError;
    expect(err.code).toBe("CONFIG_INVALID");
    return err.problems;
  }
  throw new Error("expected a ConfigError");
}

/** Exactly one problem; its message names file, entry, field and value. */
function oneProblem(text: string, entry: string, field: string, value: string, reason: RegExp): void {
  const ps = problemsOf(text);
  expect(ps).toHaveLength(1);
  expect(ps[0]).toMatchObject({ source: SRC, entry, field, value });
  expect(ps[0]?.reason).toMatch(reason);
  const msg = new ConfigError(ps).message;
  expect(msg).toContain(SRC);
  expect(msg).toContain(field ? `${entry}.${field}` : entry);
  expect(msg).toContain(value);
}

const SVC = `services:\n- {name: echo, namespace: default, vips: ["/10.96.0.20"], ports: {80: 8080}}\n`;
const wl = (extra: string) => `workloads:\n- {name: a, namespace: default, workloadIps: ["10.0.0.1"]${extra}}\n`;

describe("parseLocalConfig: good files", () => {
  it("treats an empty file, comments only, or missing lists as an empty snapshot", () => {
    for (const t of ["", "# nothing\n", "workloads:\n", "workloads: []\nservices: []\npolicies: []\n"]) {
      expect(parse(t)).toEqual({ workloads: [], services: [], policies: [] });
    }
  });

  it("fills workload defaults", () => {
    const [w] = parse(wl("")).workloads;
    expect(w).toEqual({
      uid: "c1//v1/Pod/default/a", name: "a", namespace: "default", serviceAccount: "default",
      workloadIps: ["10.0.0.1"], protocol: "TCP", node: "", trustDomain: "td.local", clusterId: "c1",
      canonicalName: "a", canonicalRevision: "latest", workloadType: "pod", workloadName: "a",
      status: "Healthy", capacity: 1, labels: new Map(), services: new Map(),
    });
  });

  it("reads the contract's example shape, normalizing IPs and int or string port keys", () => {
    const s = parse(`${SVC}workloads:
- uid: cluster1//v1/Pod/default/sleep-1
  name: sleep-1
  namespace: default
  serviceAccount: sleep
  workloadIps: ["10.244.1.5", "::FFFF:10.244.1.6", "FD00::0:1"]
  protocol: HBONE
  node: node-a
  canonicalName: sleep
  canonicalRevision: v1
  labels: {app: sleep}
  capacity: 3
  services: {"default/echo.default.svc.cluster.local": {80: 8080, "81": 0}}
`);
    const w = s.workloads[0];
    expect(w?.uid).toBe("cluster1//v1/Pod/default/sleep-1");
    expect(w?.workloadIps).toEqual(["10.244.1.5", "10.244.1.6", "fd00::1"]);
    expect(w?.labels).toEqual(new Map([["app", "sleep"]]));
    expect(w?.services.get("default/echo.default.svc.cluster.local")).toEqual(new Map([[80, 8080], [81, 0]]));
    expect(s.services[0]).toEqual({
      name: "echo", namespace: "default", hostname: "echo.default.svc.cluster.local",
      vips: [{ network: "", address: "10.96.0.20" }], ports: new Map([[80, 8080]]), subjectAltNames: [],
    });
  });

  it("accepts VIPs as network/ip, /ip and ip", () => {
    const s = parse(`services:\n- {name: x, namespace: n, vips: ["net1/10.0.0.1", "/10.0.0.2", "FD00::3"]}\n`);
    expect(s.services[0]?.vips).toEqual([
      { network: "net1", address: "10.0.0.1" }, { network: "", address: "10.0.0.2" }, { network: "", address: "fd00::3" },
    ]);
  });
});

describe("parseLocalConfig: each kind of problem names file, entry, field and value", () => {
  it("unknown top-level key", () => oneProblem("workload: []\n", "workload", "", "[]", /unknown key "workload".*did you mean "workloads"/));
  it("unknown workload key (typo)", () =>
    oneProblem(wl(", serviceAcount: x"), "workloads[0]", "serviceAcount", '"x"', /unknown key "serviceAcount".*"serviceAccount"/));
  it("unknown service key", () =>
    oneProblem(`services:\n- {name: x, namespace: n, vip: ["1.1.1.1"]}\n`, "services[0]", "vip", '["1.1.1.1"]', /unknown key "vip"/));
  it("wrong type", () => oneProblem(wl(", node: 5"), "workloads[0]", "node", "5", /must be a string; got a number/));
  it("wrong type of a list", () =>
    oneProblem(`workloads:\n- {name: a, namespace: d, workloadIps: "10.0.0.1"}\n`, "workloads[0]", "workloadIps", '"10.0.0.1"', /must be a list/));
  it("entry that is not a mapping", () => oneProblem("services:\n- echo\n", "services[0]", "", '"echo"', /must be a mapping/));
  it("top-level list of the wrong type", () => oneProblem("policies: {a: 1}\n", "policies", "", '{"a":1}', /must be a list/));
  it("missing required field", () =>
    oneProblem(`workloads:\n- {name: a, workloadIps: ["10.0.0.1"]}\n`, "workloads[0]", "namespace", "<missing>", /required/));
  it("no workload IP", () => oneProblem(`workloads:\n- {name: a, namespace: d, workloadIps: []}\n`, "workloads[0]", "workloadIps", "[]", /at least one/));
  it("bad workload IP", () =>
    oneProblem(`workloads:\n- {name: a, namespace: d, workloadIps: ["10.0.0.1", "10.0.0.256"]}\n`, "workloads[0]", "workloadIps[1]", '"10.0.0.256"', /not a valid/));
  it("bad VIP", () => oneProblem(`services:\n- {name: x, namespace: n, vips: ["/10.0.0"]}\n`, "services[0]", "vips[0]", '"/10.0.0"', /network/));
  it("bad enum", () => oneProblem(wl(", protocol: hbone"), "workloads[0]", "protocol", '"hbone"', /one of HBONE, TCP/));
  it("capacity below 1", () => oneProblem(wl(", capacity: 0"), "workloads[0]", "capacity", "0", /integer 1\.\./));
  it("label that is not a string", () => oneProblem(wl(", labels: {version: 2}"), "workloads[0]", 'labels["version"]', "2", /must be a string/));
  it("service port out of range", () =>
    oneProblem(`services:\n- {name: x, namespace: n, ports: {70000: 80}}\n`, "services[0]", "ports[70000]", '"70000"', /service port/));
  it("target port out of range", () =>
    oneProblem(`services:\n- {name: x, namespace: n, ports: {80: -1}}\n`, "services[0]", "ports[80]", "-1", /target port/));
  it("workload services key naming an undefined service", () =>
    oneProblem(`${SVC}${wl(', services: {"default/ehco.default.svc.cluster.local": {80: 8080}}')}`, "workloads[0]",
      'services["default/ehco.default.svc.cluster.local"]', '"default/ehco.default.svc.cluster.local"', /no service/));
  it("workload services key without a namespace", () =>
    oneProblem(wl(', services: {"echo": {80: 8080}}'), "workloads[0]", 'services["echo"]', '"echo"', /<namespace>\/<hostname>/));
  it("duplicate uid", () => {
    const text = `workloads:\n- {uid: u1, name: a, namespace: d, workloadIps: ["10.0.0.1"]}\n- {uid: u1, name: b, namespace: d, workloadIps: ["10.0.0.2"]}\n`;
    oneProblem(text, "workloads[1]", "uid", '"u1"', /duplicate uid.*workloads\[0\]/);
  });
  it("the same IP on two workloads (in any textual form)", () => {
    const text = `workloads:\n- {name: a, namespace: d, workloadIps: ["10.0.0.1"]}\n- {name: b, namespace: d, workloadIps: ["::ffff:10.0.0.1"]}\n`;
    oneProblem(text, "workloads[1]", "workloadIps[0]", '"10.0.0.1"', /already used by workloads\[0\] \(d\/a\)/);
  });
  it("the same VIP on two services", () => {
    const text = `services:\n- {name: a, namespace: d, vips: ["/10.96.0.1"]}\n- {name: b, namespace: d, vips: ["net2/10.96.0.1"]}\n`;
    oneProblem(text, "services[1]", "vips[0]", '"10.96.0.1"', /already used by services\[0\]/);
  });
  it("the same service twice", () => {
    const text = `services:\n- {name: a, namespace: d}\n- {name: a, namespace: d}\n`;
    oneProblem(text, "services[1]", "hostname", '"a.d.svc.cluster.local"', /already defined by services\[0\]/);
  });
  it("YAML syntax error, with its line", () => {
    const ps = problemsOf("workloads:\n- {name: a\n");
    expect(ps[0]?.entry).toMatch(/^line \d+, column \d+$/);
    expect(ps[0]?.reason).toMatch(/YAML syntax/);
  });
  it("duplicate YAML key", () => expect(problemsOf("workloads: []\nworkloads: []\n")[0]?.reason).toMatch(/YAML syntax.*unique/i));
  it("a document that is not a mapping", () => oneProblem("- a\n", "(document)", "", "a list", /must be a mapping/));
});

describe("parseLocalConfig: a file with many problems", () => {
  it("lists every problem in one ConfigError", () => {
    const text = `
workloads:
- {name: a, namespace: d, workloadIps: ["10.0.0.1"], protocl: HBONE}
- {namespace: d, workloadIps: ["nope"], capacity: "2"}
services:
- {name: s, namespace: d, ports: {0: 80}}
policies:
- {name: p, namespace: d, action: Reject, rules: [[[{destinationPorts: [99999]}]]]}
extra: true
`;
    const ps = problemsOf(text);
    const where = ps.map((p) => (p.field ? `${p.entry}.${p.field}` : p.entry));
    expect(where).toEqual(expect.arrayContaining([
      "extra", "workloads[0].protocl", "workloads[1].name", "workloads[1].workloadIps[0]", "workloads[1].capacity",
      "services[0].ports[0]", "policies[0].action", "policies[0].rules[0][0][0].destinationPorts[0]",
    ]));
    expect(ps).toHaveLength(8);
    expect(ps.every((p) => p.source === SRC)).toBe(true);
  });
});
