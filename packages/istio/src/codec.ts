/**
 * Encode and decode the control-plane messages (protobufjs, from the definitions in
 * `proto/`). Decoding throws on bytes that are not the message; every decoded field is
 * present (proto3 defaults), enums come back by name, int64 as a number, bytes as Buffer.
 */
import protobuf from "protobufjs";
import type { CaRequest, CaResponse, DeltaRequest, DeltaResponse, WireAddress, WireAuthorization, WireService, WireWorkload, XdsResource } from "./messages.js";
import { AUTHORIZATION_PROTO } from "./proto/authorization.js";
import { CA_PROTO } from "./proto/ca.js";
import { DISCOVERY_PROTO, RPC_STATUS_PROTO } from "./proto/discovery.js";
import { WORKLOAD_PROTO } from "./proto/workload.js";

const root = new protobuf.Root();
for (const f of ["struct", "any", "wrappers", "empty"]) root.addJSON(protobuf.common.get(`google/protobuf/${f}.proto`)!.nested!);
for (const text of [RPC_STATUS_PROTO, DISCOVERY_PROTO, WORKLOAD_PROTO, AUTHORIZATION_PROTO, CA_PROTO]) protobuf.parse(text, root, { keepCase: true });
root.resolveAll();

const types = {
  caRequest: root.lookupType("istio.v1.auth.IstioCertificateRequest"),
  caResponse: root.lookupType("istio.v1.auth.IstioCertificateResponse"),
  deltaRequest: root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryRequest"),
  deltaResponse: root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryResponse"),
  resource: root.lookupType("envoy.service.discovery.v3.Resource"),
  address: root.lookupType("istio.workload.Address"),
  authorization: root.lookupType("istio.security.Authorization"),
};

const READ: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, arrays: true, objects: true };

function encode(t: protobuf.Type, value: object): Buffer {
  const w = t.encode(t.fromObject(value as Record<string, unknown>)).finish();
  return Buffer.from(w.buffer, w.byteOffset, w.byteLength);
}

function decode<T>(t: protobuf.Type, bytes: Uint8Array, options: protobuf.IConversionOptions = READ): T {
  return t.toObject(t.decode(bytes), options) as T;
}

// ---- google.protobuf.Struct <-> JSON values ----
type StructValue = { nullValue?: 0; numberValue?: number; stringValue?: string; boolValue?: boolean; structValue?: Struct; listValue?: { values: StructValue[] } };
interface Struct {
  fields: Record<string, StructValue>;
}

export function toStruct(obj: Readonly<Record<string, unknown>>): Struct {
  return { fields: Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toValue(v)])) };
}

function toValue(v: unknown): StructValue {
  if (v === null) return { nullValue: 0 };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  if (typeof v === "object") return { structValue: toStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}

export function fromStruct(s: Partial<Struct> | null | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
}

function fromValue(v: StructValue): unknown {
  if (v.structValue !== undefined) return fromStruct(v.structValue);
  if (v.listValue !== undefined) return (v.listValue.values ?? []).map(fromValue);
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  return null;
}

// ---- CA ----
export const encodeCaRequest = (r: CaRequest): Buffer => encode(types.caRequest, { ...r, metadata: toStruct(r.metadata) });
export function decodeCaRequest(b: Uint8Array): CaRequest {
  const r = decode<CaRequest & { metadata: Struct }>(types.caRequest, b);
  return { csr: r.csr, validity_duration: r.validity_duration, metadata: fromStruct(r.metadata) };
}
export const encodeCaResponse = (r: CaResponse): Buffer => encode(types.caResponse, r);
export const decodeCaResponse = (b: Uint8Array): CaResponse => decode<CaResponse>(types.caResponse, b);

// ---- delta xDS ----
export function encodeDeltaRequest(r: DeltaRequest): Buffer {
  return encode(types.deltaRequest, { ...r, node: r.node ? { ...r.node, metadata: toStruct(r.node.metadata) } : undefined });
}
export function decodeDeltaRequest(b: Uint8Array): Required<DeltaRequest> {
  const r = decode<Required<DeltaRequest> & { node?: { id: string; cluster: string; metadata: Struct } }>(types.deltaRequest, b);
  return { ...r, node: r.node ? { id: r.node.id, cluster: r.node.cluster, metadata: fromStruct(r.node.metadata) } : undefined, error_detail: r.error_detail ?? undefined };
}
/** Each resource object's encoded Resource message: a server sends one object to many clients, and encodes it once. */
const resourceBytes = new WeakMap<XdsResource, Uint8Array>();

function resourceMessage(r: XdsResource): Uint8Array {
  let b = resourceBytes.get(r);
  if (b === undefined) resourceBytes.set(r, (b = types.resource.encode(types.resource.fromObject(r as unknown as Record<string, unknown>)).finish()));
  return b;
}

/**
 * Written field by field (numbers from Envoy's discovery.proto: system_version_info 1,
 * resources 2, type_url 4, nonce 5, removed_resources 6) around the cached Resource
 * messages, so that pushing a large table to many clients costs a copy per client, not an encoding.
 */
export function encodeDeltaResponse(r: DeltaResponse): Buffer {
  const w = protobuf.Writer.create();
  if (r.system_version_info) w.uint32((1 << 3) | 2).string(r.system_version_info);
  for (const res of r.resources) w.uint32((2 << 3) | 2).bytes(resourceMessage(res));
  if (r.type_url) w.uint32((4 << 3) | 2).string(r.type_url);
  if (r.nonce) w.uint32((5 << 3) | 2).string(r.nonce);
  for (const name of r.removed_resources) w.uint32((6 << 3) | 2).string(name);
  const out = w.finish();
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
export const decodeDeltaResponse = (b: Uint8Array): DeltaResponse => decode<DeltaResponse>(types.deltaResponse, b);

// ---- resources ----
export const encodeAddress = (a: WireAddress): Buffer => encode(types.address, a);
/** The workload or the service (whichever is set); throws on bytes that are not an Address. */
export function decodeAddress(b: Uint8Array): WireAddress | Record<string, never> {
  const a = decode<{ workload?: WireWorkload; service?: WireService; type?: string }>(types.address, b, { ...READ, oneofs: true });
  if (a.type === "workload" && a.workload) return { workload: a.workload };
  if (a.type === "service" && a.service) return { service: a.service };
  return {};
}
export const encodeAuthorization = (a: WireAuthorization): Buffer => encode(types.authorization, a);
export function decodeAuthorization(b: Uint8Array): WireAuthorization {
  return decode<WireAuthorization>(types.authorization, b, { ...READ, oneofs: false });
}
