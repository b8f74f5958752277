/** Service -> endpoint resolution: target ports and weighted endpoint choice. */
import type { MeshStore } from "./store.js";
import { type Service, serviceKey, type Workload } from "./types.js";

/**
 * The port to dial on `workload` for `servicePort` of `service`: the workload's own map
 * for that service wins, else the service's. A target of 0 means "same as the service port".
 * Undefined when neither exposes `servicePort`.
 */
export function targetPort(service: Service, workload: Workload, servicePort: number): number | undefined {
  const own = workload.services.get(serviceKey(service))?.get(servicePort);
  const target = own ?? service.ports.get(servicePort);
  if (target === undefined) return undefined;
  return target === 0 ? servicePort : target;
}

/** One endpoint of a service as the choice sees it: dialled on `port` with chance `weight`/total, or skipped and why. */
export interface EndpointCandidate {
  readonly workload: Workload;
  /** The port to dial; undefined when the endpoint does not serve the service port. */
  readonly port: number | undefined;
  /** Its share of the weighted choice (`capacity`, at least 1); 0 when skipped. */
  readonly weight: number;
  /** Why it cannot be chosen: not Healthy, or no target for the service port. */
  readonly skipped?: "unhealthy" | "no-port";
}

/** One endpoint of `service` for `servicePort`: its port and weight, or why it is skipped. */
function candidate(service: Service, workload: Workload, servicePort: number): EndpointCandidate {
  const port = targetPort(service, workload, servicePort);
  if (workload.status !== "Healthy") return { workload, port, weight: 0, skipped: "unhealthy" };
  if (port === undefined) return { workload, port, weight: 0, skipped: "no-port" };
  return { workload, port, weight: Math.max(1, Math.floor(workload.capacity) || 1) };
}

function choosable(c: EndpointCandidate): c is EndpointCandidate & { port: number } {
  return c.skipped === undefined && c.port !== undefined;
}

/** Every endpoint of `service` for `servicePort`, in the store's order, each with its port and weight, or why it is skipped. */
export function endpointCandidates(store: Pick<MeshStore, "endpoints">, service: Service, servicePort: number): EndpointCandidate[] {
  const out: EndpointCandidate[] = [];
  for (const workload of store.endpoints(service)) out.push(candidate(service, workload, servicePort));
  return out;
}

/**
 * A weighted-random (by `capacity`) Healthy endpoint of `service` that serves `servicePort`,
 * with the port to dial. `random` returns [0, 1) like Math.random.
 */
export function pickEndpoint(
  store: Pick<MeshStore, "endpoints">,
  service: Service,
  servicePort: number,
  random: () => number = Math.random,
): { workload: Workload; port: number } | undefined {
  const candidates: (EndpointCandidate & { port: number })[] = [];
  let total = 0;
  for (const workload of store.endpoints(service)) {
    const c = candidate(service, workload, servicePort);
    if (!choosable(c)) continue;
    candidates.push(c);
    total += c.weight;
  }
  if (candidates.length === 0) return undefined;
  let r = Math.min(Math.max(random(), 0), 0.999999999999) * total;
  for (const c of candidates) {
    if (r < c.weight) return { workload: c.workload, port: c.port };
    r -= c.weight;
  }
  const last = candidates[candidates.length - 1];
  return last && { workload: last.workload, port: last.port };
}
