import { captureWithApiSuite } from "./support/capture-api-suite.js";

// The emulated cluster in Kubernetes mode: its pods, service, EndpointSlice and policy are
// objects in a FAKE API server, and the agents (REDIRECT_MODE=tproxy, DISCOVERY=kubernetes)
// follow it with a kubeconfig and a token, as in a cluster. Needs root.
captureWithApiSuite("kubernetes");
