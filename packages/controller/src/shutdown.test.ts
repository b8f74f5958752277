import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { grpcServerOptions, shutdownGrpc } from "./controller.js";
import { connectRawAds, startTlsAdsServer } from "./test-support/ads-client.js";

describe("the controller's gRPC server", () => {
  it("limits streams per connection and the request size (4 MiB), explicitly", () => {
    expect(grpcServerOptions(1_800_000)).toMatchObject({ "grpc.max_concurrent_streams": 100, "grpc.max_receive_message_length": 4 * 1024 * 1024, "grpc.max_connection_age_ms": 1_800_000, "grpc.max_connection_age_grace_ms": 10_000 });
  });

  it("shutdownGrpc ends even with a stream that never finishes (tryShutdown alone waits for it forever)", async () => {
    let opened = false;
    // A handler that never ends its stream: as one waiting on a TokenReview that does not answer.
    const tls = await startTlsAdsServer({ DeltaAggregatedResources: () => void (opened = true) });
    const c = connectRawAds(tls.port, tls.rootPem, { nodeId: "stuck" });
    try {
      c.subscribe(["type.googleapis.com/istio.workload.Address"]);
      for (let i = 0; i < 500 && !opened; i++) await new Promise((r) => setTimeout(r, 10));
      expect(opened).toBe(true);
      const done = await Promise.race([shutdownGrpc(tls.server, 100).then(() => "shut down"), new Promise((r) => setTimeout(() => r("still waiting"), 5_000))]);
      expect(done).toBe("shut down");
      expect((await c.ended).code).not.toBe(grpc.status.OK);
    } finally {
      c.close();
      tls.server.forceShutdown();
    }
  });
});
