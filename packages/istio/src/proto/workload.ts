/**
 * `istio.workload.Address` and its parts: the workloads and services istiod sends
 * ztunnel. Written from the field numbers in shared/spec/istio-control-plane.md
 * (checked against istio/istio's pkg/workloadapi); only the fields this agent reads or
 * the controller writes, plus the ones an istiod sends that carry no meaning here are
 * simply skipped by the decoder (unknown fields are legal protobuf).
 */
export const WORKLOAD_PROTO = `
syntax = "proto3";
package istio.workload;
import "google/protobuf/wrappers.proto";

message Address {
  oneof type {
    Workload workload = 1;
    Service service = 2;
  }
}

message Service {
  string name = 1;
  string namespace = 2;
  string hostname = 3;
  repeated NetworkAddress addresses = 4;
  repeated Port ports = 5;
  repeated string subject_alt_names = 6;
  GatewayAddress waypoint = 7;
  uint32 ip_families = 9;
}

enum WorkloadStatus { HEALTHY = 0; UNHEALTHY = 1; }
enum WorkloadType { DEPLOYMENT = 0; CRONJOB = 1; POD = 2; JOB = 3; }
enum TunnelProtocol { NONE = 0; HBONE = 1; LEGACY_ISTIO_MTLS = 2; }
enum NetworkMode { STANDARD = 0; HOST_NETWORK = 1; }

message Workload {
  string uid = 20;
  string name = 1;
  string namespace = 2;
  repeated bytes addresses = 3;
  string hostname = 21;
  string network = 4;
  TunnelProtocol tunnel_protocol = 5;
  string trust_domain = 6;
  string service_account = 7;
  GatewayAddress waypoint = 8;
  GatewayAddress network_gateway = 19;
  string node = 9;
  string canonical_name = 10;
  string canonical_revision = 11;
  WorkloadType workload_type = 12;
  string workload_name = 13;
  map<string, PortList> services = 22;
  repeated string authorization_policies = 16;
  WorkloadStatus status = 17;
  string cluster_id = 18;
  Locality locality = 24;
  NetworkMode network_mode = 25;
  google.protobuf.UInt32Value capacity = 27;
}

message Locality {
  string region = 1;
  string zone = 2;
  string subzone = 3;
}

message PortList { repeated Port ports = 1; }

message Port {
  uint32 service_port = 1;
  uint32 target_port = 2;
  uint32 app_protocol = 3;
}

message GatewayAddress {
  oneof destination {
    NamespacedHostname hostname = 1;
    NetworkAddress address = 2;
  }
  uint32 hbone_mtls_port = 3;
}

message NamespacedHostname {
  string namespace = 1;
  string hostname = 2;
}

message NetworkAddress {
  string network = 1;
  bytes address = 2;
}
`;
