/** The mesh model: what discovery produces and what the proxy looks up. */

export type Protocol = "HBONE" | "TCP";
export type HealthStatus = "Healthy" | "Unhealthy";

/** A port map: service port -> target port. */
export type PortMap = ReadonlyMap<number, number>;

export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Normalized textual IPs (IPv4 dotted, IPv6 compressed lower-case). */
  readonly workloadIps: readonly string[];
  readonly protocol: Protocol;
  readonly node: string;
  readonly trustDomain: string;
  readonly clusterId: string;
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  /** Kubernetes kind of the owner workload for baggage (e.g. "deployment"); default "pod". */
  readonly workloadType: string;
  readonly workloadName: string;
  readonly status: HealthStatus;
  /** Pod labels (used by WorkloadSelector policies and the `app` metric label). */
  readonly labels: ReadonlyMap<string, string>;
  /** Relative weight for load balancing; >= 1. */
  readonly capacity: number;
  /** Per-endpoint port overrides, keyed by "<namespace>/<hostname>". */
  readonly services: ReadonlyMap<string, PortMap>;
  /**
   * WorkloadSelector policies that select this workload, as "<namespace>/<name>" (Istio's
   * `authorization_policies`): how delta xDS says which policies apply, since its policies carry no selector.
   */
  readonly authorizationPolicies?: readonly string[];
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  /** VIPs as network + normalized IP. */
  readonly vips: readonly { readonly network: string; readonly address: string }[];
  readonly ports: PortMap;
  readonly subjectAltNames: readonly string[];
}

export type PolicyScope = "Global" | "Namespace" | "WorkloadSelector";
export type PolicyAction = "Allow" | "Deny";

/** One match: every present field must match (fields AND); each list is OR. */
export interface PolicyMatch {
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  readonly serviceAccounts?: readonly string[];
  readonly notServiceAccounts?: readonly string[];
  /** CIDRs or IPs. */
  readonly sourceIps?: readonly string[];
  readonly notSourceIps?: readonly string[];
  readonly destinationIps?: readonly string[];
  readonly notDestinationIps?: readonly string[];
  readonly destinationPorts?: readonly number[];
  readonly notDestinationPorts?: readonly number[];
}

export interface Policy {
  readonly name: string;
  readonly namespace: string;
  readonly scope: PolicyScope;
  readonly action: PolicyAction;
  readonly dryRun: boolean;
  /** For WorkloadSelector scope: labels a workload must carry. */
  readonly selector: ReadonlyMap<string, string>;
  /** Applies only to the workloads that name it in `authorizationPolicies` (a WorkloadSelector policy from delta xDS), whatever `selector` says. */
  readonly selectedByName?: boolean;
  /** A policy a workload names that discovery has not delivered: it stands in, matching nothing (fail closed). */
  readonly missing?: boolean;
  /** rules OR, clauses AND, matches OR. */
  readonly rules: readonly (readonly (readonly PolicyMatch[])[])[];
}

/** Everything discovery knows at one moment. Immutable: a reload builds a new one. */
export interface MeshSnapshot {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly Policy[];
}

/**
 * A change to the mesh: what was added or changed (by uid, by serviceKey), what is gone,
 * and the policies when they changed (their whole set: there are few). A source that
 * follows changes one at a time applies these instead of rebuilding everything.
 */
export interface MeshDelta {
  readonly workloads?: readonly Workload[];
  /** Uids. */
  readonly removedWorkloads?: readonly string[];
  readonly services?: readonly Service[];
  /** serviceKey()s. */
  readonly removedServices?: readonly string[];
  readonly policies?: readonly Policy[];
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

const identities = new WeakMap<Workload, string>();

/**
 * The workload's SPIFFE id, built once per workload object (they are immutable): every
 * connection's record holds it, and one string shared by all of them costs nothing per connection.
 */
export function workloadIdentity(w: Workload): string {
  let id = identities.get(w);
  if (id === undefined) identities.set(w, (id = spiffeId(w.trustDomain, w.namespace, w.serviceAccount)));
  return id;
}

export function serviceKey(s: Pick<Service, "namespace" | "hostname">): string {
  return `${s.namespace}/${s.hostname}`;
}
