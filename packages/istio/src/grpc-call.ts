/** What both clients send istiod (or zt-controller) alike: the TLS name to check, and each call's credentials. */
import * as grpc from "@grpc/grpc-js";

/** Check the server's certificate against `altHostname` (ALT_CA_HOSTNAME / ALT_XDS_HOSTNAME) instead of the address's host. */
export function tlsNameOptions(altHostname: string | undefined): grpc.ChannelOptions {
  return altHostname ? { "grpc.ssl_target_name_override": altHostname, "grpc.default_authority": altHostname } : {};
}

/** `authorization: Bearer <token>` and `clusterid`, as Istio's ztunnel sends them. */
export function callMetadata(token: string, clusterId: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  md.set("clusterid", clusterId);
  return md;
}
