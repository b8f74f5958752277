import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** A temp dir for one test file's workload files; returns a writer. */
export function workloadDir(): { dir: string; write(name: string, yaml: string): string } {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-wl-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    write(name, yaml) {
      const p = path.join(dir, name);
      writeFileSync(p, yaml);
      return p;
    },
  };
}

/** The test mesh used by the loopback tests, on 127.<net>.x.y. */
export function meshYaml(net: number, extra = ""): string {
  const a = `127.${net}.1`;
  const b = `127.${net}.2`;
  return `
workloads:
- {name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["${a}.10"], protocol: HBONE, node: node-a, canonicalName: sleep, canonicalRevision: v1}
- {name: local-echo, namespace: default, serviceAccount: echo, workloadIps: ["${a}.11"], protocol: HBONE, node: node-a}
- {name: outsider, namespace: default, workloadIps: ["${a}.12"], protocol: TCP, node: node-a}
- name: echo
  namespace: default
  serviceAccount: echo
  workloadIps: ["${b}.10"]
  protocol: HBONE
  node: node-b
  services: {"default/echo.default.svc.cluster.local": {80: 8080}}
- name: echo-sick
  namespace: default
  serviceAccount: echo
  workloadIps: ["${b}.11"]
  protocol: HBONE
  node: node-b
  status: Unhealthy
  services: {"default/echo.default.svc.cluster.local": {80: 8080}}
- {name: legacy, namespace: legacy, workloadIps: ["${b}.20"], protocol: TCP, node: node-b}
services:
- {name: echo, namespace: default, vips: ["/127.${net}.3.1"], ports: {80: 8080}}
- {name: empty, namespace: default, vips: ["/127.${net}.3.2"], ports: {80: 8080}}
policies:
- {name: deny-9999, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [9999]}]]]}
${extra}`;
}
