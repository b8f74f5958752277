import https from "node:https";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fakeKubeconfig, selfSignedServingCert } from "@zt/harness";
import { KubeConfig } from "@zt/kube";
import { ZtError } from "@zt/errors";
import { createTokenReviewer } from "./token-review.js";

// A FAKE TokenReview endpoint on loopback HTTPS that counts the TLS connections it accepts.
const serving = selfSignedServingCert(["127.0.0.1"]);
let server: https.Server;
let url: string;
let connections = 0;
const seen: { auth: string | undefined; body: { spec: { token: string; audiences: string[] } } }[] = [];

beforeAll(async () => {
  server = https.createServer({ cert: serving.cert, key: serving.key }, (req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => (text += c.toString()));
    req.on("end", () => {
      const body = JSON.parse(text) as { spec: { token: string; audiences: string[] } };
      seen.push({ auth: req.headers.authorization, body });
      if (body.spec.token === "forbidden") return void res.writeHead(403, { "content-type": "application/json" }).end('{"kind":"Status","message":"tokenreviews.authentication.k8s.io is forbidden"}');
      const ok = body.spec.token.startsWith("good");
      res.writeHead(201, { "content-type": "application/json" }).end(
        JSON.stringify({ kind: "TokenReview", status: ok ? { authenticated: true, audiences: body.spec.audiences, user: { username: "system:serviceaccount:istio-system:ztunnel", extra: { "authentication.kubernetes.io/pod-name": ["ztunnel-x"], "authentication.kubernetes.io/pod-uid": ["u-1"] } } } : { authenticated: false, error: "token expired" } }),
      );
    });
  });
  server.on("secureConnection", () => connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe("createTokenReviewer", () => {
  test("reviews on kept-alive connections, with the kubeconfig's credentials, and reads the caller and its pod", async () => {
    const kc = new KubeConfig();
    kc.loadFromString(fakeKubeconfig(url, "controller-token", serving.cert));
    const r = createTokenReviewer(kc);
    const callers = [];
    for (let i = 0; i < 3; i++) callers.push(await r.review(`good-${i}`));
    expect(callers[2]).toEqual({ namespace: "istio-system", serviceAccount: "ztunnel", podName: "ztunnel-x", podUid: "u-1" });
    expect(seen.map((s) => [s.auth, s.body.spec.token, s.body.spec.audiences])).toEqual([0, 1, 2].map((i) => ["Bearer controller-token", `good-${i}`, ["istio-ca"]]));
    // One TLS connection for the three, not one per review.
    expect(connections).toBe(1);
  });

  test("an unauthenticated token and a refused review are told apart", async () => {
    const kc = new KubeConfig();
    kc.loadFromString(fakeKubeconfig(url, "controller-token", serving.cert));
    const r = createTokenReviewer(kc);
    const bad = await r.review("expired").catch((e: unknown) => e as ZtError);
    expect(bad).toMatchObject({ code: "CA_CALLER_UNAUTHENTICATED" });
    expect((bad as ZtError).message).toMatch(/token expired/);
    const refused = await r.review("forbidden").catch((e: unknown) => e as ZtError);
    expect(refused).toMatchObject({ code: "TOKEN_REVIEW_FAILED" });
    expect((refused as ZtError).message).toMatch(/HTTP 403: .*forbidden/);
  });
});

describe("bearerToken (the one parser of the CA and xDS)", () => {
  const md = (v?: string): { get(k: string): string[] } => ({ get: (k) => (k === "authorization" && v !== undefined ? [v] : []) });
  test("Bearer in any case, trimmed; absent, empty or another scheme is undefined", async () => {
    const { bearerToken } = await import("./token-review.js");
    expect(bearerToken(md("Bearer abc"))).toBe("abc");
    expect(bearerToken(md("bearer abc"))).toBe("abc");
    expect(bearerToken(md("  BEARER   abc  "))).toBe("abc");
    for (const v of [undefined, "", "Bearer", "Bearer ", "Bearer    ", "Basic abc", "Bearerabc", "Bearer a b"]) expect(bearerToken(md(v))).toBeUndefined();
  });
});
