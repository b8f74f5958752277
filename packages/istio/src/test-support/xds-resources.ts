/** Wire resources for xDS tests: a workload, a service, a policy, each as a Resource of its type. */
import { encodeAddress, encodeAuthorization } from "../codec.js";
import { ipToBytes } from "../ip-bytes.js";
import { ADDRESS_TYPE, AUTHORIZATION_TYPE, type WireAuthorization, type WireService, type WireWorkload, type XdsResource } from "../messages.js";

export function wireWorkload(uid: string, ip: string, extra: Partial<WireWorkload> = {}): WireWorkload {
  const name = uid.split("/").pop()!;
  return {
    uid,
    name,
    namespace: "default",
    addresses: [ipToBytes(ip)],
    tunnel_protocol: "HBONE",
    trust_domain: "cluster.local",
    service_account: name,
    node: "node-a",
    canonical_name: name,
    canonical_revision: "v1",
    workload_type: "POD",
    workload_name: name,
    services: {},
    authorization_policies: [],
    status: "HEALTHY",
    cluster_id: "Kubernetes",
    ...extra,
  };
}

export function wireService(hostname: string, vip: string, extra: Partial<WireService> = {}): WireService {
  return {
    name: hostname.split(".")[0]!,
    namespace: "default",
    hostname,
    addresses: [{ network: "", address: ipToBytes(vip) }],
    ports: [{ service_port: 80, target_port: 8080 }],
    subject_alt_names: [],
    ...extra,
  };
}

export function wireAuthorization(namespace: string, name: string, extra: Partial<WireAuthorization> = {}): WireAuthorization {
  return { name, namespace, scope: "NAMESPACE", action: "ALLOW", groups: [{ rules: [{ matches: [{ namespaces: [{ exact: "default" }] }] }] }], dry_run: false, ...extra };
}

export const workloadResource = (w: WireWorkload, version = "1"): XdsResource => ({ name: w.uid, version, resource: { type_url: ADDRESS_TYPE, value: encodeAddress({ workload: w }) } });
export const serviceResource = (s: WireService, version = "1"): XdsResource => ({
  name: `${s.namespace}/${s.hostname}`,
  version,
  resource: { type_url: ADDRESS_TYPE, value: encodeAddress({ service: s }) },
});
export const authorizationResource = (a: WireAuthorization, version = "1"): XdsResource => ({
  name: `${a.namespace}/${a.name}`,
  version,
  resource: { type_url: AUTHORIZATION_TYPE, value: encodeAuthorization(a) },
});
