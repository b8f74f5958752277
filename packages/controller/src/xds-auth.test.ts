import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ZtError } from "@zt/errors";
import { createXdsAuthenticator } from "./xds-auth.js";
import type { Caller, TokenReviewer } from "./token-review.js";
import { XdsRefusal } from "./xds-server.js";

// A FAKE TokenReviewer: what each token is, and the tokens it was asked about.
const callers: Record<string, Caller | Error> = {
  agent: { namespace: "istio-system", serviceAccount: "ztunnel", podName: "ztunnel-a", podUid: "u-1" },
  unbound: { namespace: "istio-system", serviceAccount: "ztunnel" },
  sleep: { namespace: "default", serviceAccount: "sleep", podName: "sleep-1", podUid: "u-2" },
  expired: new ZtError("CA_CALLER_UNAUTHENTICATED", "the token does not authenticate: token expired"),
  apiDown: new ZtError("TOKEN_REVIEW_FAILED", "the TokenReview at https://127.0.0.1:1 failed: connect ECONNREFUSED"),
};
function fake(): TokenReviewer & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async review(token) {
      asked.push(token);
      const c = callers[token];
      if (c === undefined) throw new ZtError("CA_CALLER_UNAUTHENTICATED", "unknown token");
      if (c instanceof Error) throw c;
      return c;
    },
  };
}
const md = (authorization?: string): grpc.Metadata => {
  const m = new grpc.Metadata();
  if (authorization !== undefined) m.set("authorization", authorization);
  return m;
};
const refusal = async (p: Promise<unknown>): Promise<{ status: grpc.status; message: string }> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(XdsRefusal);
  return { status: (e as XdsRefusal).status, message: (e as XdsRefusal).message };
};

describe("who may read xDS (createXdsAuthenticator)", () => {
  it("a trusted node account with a pod-bound token is its pod; the scheme is case-insensitive", async () => {
    const tokens = fake();
    const auth = createXdsAuthenticator(tokens, ["istio-system/ztunnel"]);
    expect(await auth(md("Bearer agent"))).toEqual({ name: "istio-system/ztunnel (pod ztunnel-a)", pod: "ztunnel-a.istio-system" });
    expect(await auth(md("bearer  agent "))).toMatchObject({ pod: "ztunnel-a.istio-system" });
    expect(tokens.asked).toEqual(["agent", "agent"]);
  });

  it("no token, an empty one or another scheme: UNAUTHENTICATED without asking TokenReview", async () => {
    const tokens = fake();
    const auth = createXdsAuthenticator(tokens, ["istio-system/ztunnel"]);
    for (const h of [undefined, "", "Bearer", "Bearer ", "Bearer    ", "Basic agent"]) {
      expect((await refusal(auth(md(h)))).status).toBe(grpc.status.UNAUTHENTICATED);
    }
    expect(tokens.asked).toEqual([]);
  });

  it("a token TokenReview refuses is UNAUTHENTICATED; TokenReview failing (the API server down) is UNAVAILABLE", async () => {
    const auth = createXdsAuthenticator(fake(), ["istio-system/ztunnel"]);
    expect(await refusal(auth(md("Bearer expired")))).toMatchObject({ status: grpc.status.UNAUTHENTICATED, message: expect.stringContaining("token expired") });
    expect(await refusal(auth(md("Bearer apiDown")))).toMatchObject({ status: grpc.status.UNAVAILABLE, message: expect.stringContaining("ECONNREFUSED") });
  });

  it("any other service account, or a node account's token not bound to a pod: PERMISSION_DENIED", async () => {
    const auth = createXdsAuthenticator(fake(), ["istio-system/ztunnel"]);
    expect(await refusal(auth(md("Bearer sleep")))).toMatchObject({ status: grpc.status.PERMISSION_DENIED, message: expect.stringContaining("default/sleep is not a trusted node account") });
    expect(await refusal(auth(md("Bearer unbound")))).toMatchObject({ status: grpc.status.PERMISSION_DENIED, message: expect.stringContaining("not bound to a pod") });
    // The list is the CA's: another account named there is let in.
    expect(await createXdsAuthenticator(fake(), ["default/sleep"])(md("Bearer sleep"))).toMatchObject({ pod: "sleep-1.default" });
  });
});
