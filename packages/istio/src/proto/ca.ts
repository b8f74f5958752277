/** Istio's CA API (istio.v1.auth): one CSR in, the signed chain out. */
export const CA_PROTO = `
syntax = "proto3";
package istio.v1.auth;
import "google/protobuf/struct.proto";

message IstioCertificateRequest {
  string csr = 1;
  int64 validity_duration = 3;
  google.protobuf.Struct metadata = 4;
}

message IstioCertificateResponse {
  repeated string cert_chain = 1;
}
`;
