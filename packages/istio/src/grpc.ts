/**
 * The two gRPC services as @grpc/grpc-js definitions over our codec: a client makes calls
 * with `makeClientConstructor(...)`, a server serves them with `server.addService(...)`.
 * No .proto loading at run time beyond `codec.ts`; a body that does not decode fails
 * the call (grpc-js answers INTERNAL), it never reaches a handler.
 */
import type { ServiceDefinition } from "@grpc/grpc-js";
import { decodeCaRequest, decodeCaResponse, decodeDeltaRequest, decodeDeltaResponse, encodeCaRequest, encodeCaResponse, encodeDeltaRequest, encodeDeltaResponse } from "./codec.js";
import { CA_METHOD, DELTA_XDS_METHOD, type CaRequest, type CaResponse, type DeltaRequest, type DeltaResponse } from "./messages.js";

export const CA_SERVICE = {
  CreateCertificate: {
    path: CA_METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: (r: CaRequest) => encodeCaRequest(r),
    requestDeserialize: (b: Buffer) => decodeCaRequest(b),
    responseSerialize: (r: CaResponse) => encodeCaResponse(r),
    responseDeserialize: (b: Buffer) => decodeCaResponse(b),
  },
} satisfies ServiceDefinition;

export const ADS_SERVICE = {
  DeltaAggregatedResources: {
    path: DELTA_XDS_METHOD,
    requestStream: true,
    responseStream: true,
    requestSerialize: (r: DeltaRequest) => encodeDeltaRequest(r),
    requestDeserialize: (b: Buffer) => decodeDeltaRequest(b),
    responseSerialize: (r: DeltaResponse) => encodeDeltaResponse(r),
    responseDeserialize: (b: Buffer) => decodeDeltaResponse(b),
  },
} satisfies ServiceDefinition;
