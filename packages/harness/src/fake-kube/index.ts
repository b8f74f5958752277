export { startFakeKubeApi, type FakeKubeApi, type FakeKubeApiOptions, type FakeKubeToken } from "./server.js";
export { FakeStore, RESOURCES, type KubeObject, type Resource } from "./store.js";
export { fakeKubeconfig } from "./kubeconfig.js";
export { selfSignedServingCert, type ServingCert } from "./tls.js";
export { API_SERVER_AUDIENCE, FakeServiceAccountTokens, type ServiceAccountTokenSpec, type TokenReviewStatus } from "./token-review.js";
