/**
 * The messages as plain objects, named as on the wire (snake_case, enum values by name).
 * What `codec.ts` encodes from and decodes to; decoded objects have every field, with
 * proto3 defaults for the absent ones.
 */

export interface CaRequest {
  readonly csr: string;
  /** Seconds. */
  readonly validity_duration: number;
  /** google.protobuf.Struct, as JSON values. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

export interface CaResponse {
  readonly cert_chain: readonly string[];
}

export interface XdsNode {
  readonly id: string;
  readonly cluster?: string;
  readonly metadata: Readonly<Record<string, unknown>>;
}

export interface RpcStatus {
  readonly code: number;
  readonly message: string;
}

export interface DeltaRequest {
  readonly node?: XdsNode | undefined;
  readonly type_url: string;
  readonly resource_names_subscribe?: readonly string[];
  readonly resource_names_unsubscribe?: readonly string[];
  readonly initial_resource_versions?: Readonly<Record<string, string>>;
  readonly response_nonce?: string;
  readonly error_detail?: RpcStatus | undefined;
}

export interface AnyMessage {
  readonly type_url: string;
  readonly value: Uint8Array;
}

export interface XdsResource {
  readonly name: string;
  readonly version: string;
  /** Absent for a resource named without a body (legal on the wire; refused by the client). */
  readonly resource?: AnyMessage | undefined;
  readonly aliases?: readonly string[];
}

export interface DeltaResponse {
  readonly system_version_info?: string;
  readonly type_url: string;
  readonly nonce: string;
  readonly resources: readonly XdsResource[];
  readonly removed_resources: readonly string[];
}

export type TunnelProtocol = "NONE" | "HBONE" | "LEGACY_ISTIO_MTLS";
export type WorkloadStatus = "HEALTHY" | "UNHEALTHY";
export type WorkloadType = "DEPLOYMENT" | "CRONJOB" | "POD" | "JOB";

export interface WirePort {
  readonly service_port: number;
  readonly target_port: number;
}

export interface WireNetworkAddress {
  readonly network: string;
  readonly address: Uint8Array;
}

export interface WireWorkload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly Uint8Array[];
  readonly hostname?: string;
  readonly network?: string;
  readonly tunnel_protocol: TunnelProtocol;
  readonly trust_domain: string;
  readonly service_account: string;
  readonly node: string;
  readonly canonical_name: string;
  readonly canonical_revision: string;
  readonly workload_type: WorkloadType;
  readonly workload_name: string;
  readonly services: Readonly<Record<string, { readonly ports: readonly WirePort[] }>>;
  readonly authorization_policies: readonly string[];
  readonly status: WorkloadStatus;
  readonly cluster_id: string;
  /** google.protobuf.UInt32Value: absent means 1. */
  readonly capacity?: { readonly value: number } | null | undefined;
  /** Present when the workload has a waypoint or network gateway: this agent has neither, and refuses such workloads. */
  readonly waypoint?: unknown;
  readonly network_gateway?: unknown;
  readonly network_mode?: "STANDARD" | "HOST_NETWORK";
}

export interface WireService {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly addresses: readonly WireNetworkAddress[];
  readonly ports: readonly WirePort[];
  readonly subject_alt_names: readonly string[];
  readonly waypoint?: unknown;
}

export type WireAddress = { readonly workload: WireWorkload; readonly service?: undefined } | { readonly service: WireService; readonly workload?: undefined };

export interface WireStringMatch {
  readonly exact?: string;
  readonly prefix?: string;
  readonly suffix?: string;
  readonly presence?: Record<string, never>;
}

export interface WireCidr {
  readonly address: Uint8Array;
  readonly length: number;
}

export interface WireServiceAccountMatch {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface WireMatch {
  readonly namespaces?: readonly WireStringMatch[];
  readonly not_namespaces?: readonly WireStringMatch[];
  readonly principals?: readonly WireStringMatch[];
  readonly not_principals?: readonly WireStringMatch[];
  readonly source_ips?: readonly WireCidr[];
  readonly not_source_ips?: readonly WireCidr[];
  readonly destination_ips?: readonly WireCidr[];
  readonly not_destination_ips?: readonly WireCidr[];
  readonly destination_ports?: readonly number[];
  readonly not_destination_ports?: readonly number[];
  readonly service_accounts?: readonly WireServiceAccountMatch[];
  readonly not_service_accounts?: readonly WireServiceAccountMatch[];
}

export interface WireAuthorization {
  readonly name: string;
  readonly namespace: string;
  readonly scope: "GLOBAL" | "NAMESPACE" | "WORKLOAD_SELECTOR";
  readonly action: "ALLOW" | "DENY";
  readonly groups: readonly { readonly rules: readonly { readonly matches: readonly WireMatch[] }[] }[];
  readonly dry_run: boolean;
}

export const ADDRESS_TYPE = "type.googleapis.com/istio.workload.Address";
export const AUTHORIZATION_TYPE = "type.googleapis.com/istio.security.Authorization";
export const CA_METHOD = "/istio.v1.auth.IstioCertificateService/CreateCertificate";
export const DELTA_XDS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
