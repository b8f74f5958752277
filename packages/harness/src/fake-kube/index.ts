export { startFakeKubeApi, type FakeKubeApi, type FakeKubeApiOptions, type FakeKubeToken } from "./server.js";
export { FakeStore, RESOURCES, type KubeObject, type Resource } from "./store.js";
export { fakeKubeconfig } from "./kubeconfig.js";
export { selfSignedServingCert, type ServingCert } from "./tls.js";
