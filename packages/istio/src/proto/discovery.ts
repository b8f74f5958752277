/**
 * Envoy's delta xDS messages (envoy.service.discovery.v3), the ones ztunnel and istiod
 * exchange, plus google.rpc.Status for a NACK's error_detail.
 */
export const DISCOVERY_PROTO = `
syntax = "proto3";
package envoy.service.discovery.v3;
import "google/protobuf/any.proto";
import "google/protobuf/struct.proto";

message Node {
  string id = 1;
  string cluster = 2;
  google.protobuf.Struct metadata = 3;
}

message DeltaDiscoveryRequest {
  Node node = 1;
  string type_url = 2;
  repeated string resource_names_subscribe = 3;
  repeated string resource_names_unsubscribe = 4;
  map<string, string> initial_resource_versions = 5;
  string response_nonce = 6;
  google.rpc.Status error_detail = 7;
}

message DeltaDiscoveryResponse {
  string system_version_info = 1;
  repeated Resource resources = 2;
  string type_url = 4;
  string nonce = 5;
  repeated string removed_resources = 6;
}

message Resource {
  string version = 1;
  google.protobuf.Any resource = 2;
  string name = 3;
  repeated string aliases = 4;
}
`;

export const RPC_STATUS_PROTO = `
syntax = "proto3";
package google.rpc;
import "google/protobuf/any.proto";
message Status {
  int32 code = 1;
  string message = 2;
  repeated google.protobuf.Any details = 3;
}
`;
