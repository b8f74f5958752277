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
  const candidates: { workload: Workload; port: number; weight: number }[] = [];
  let total = 0;
  for (const workload of store.endpoints(service)) {
    if (workload.status !== "Healthy") continue;
    const port = targetPort(service, workload, servicePort);
    if (port === undefined) continue;
    const weight = Math.max(1, Math.floor(workload.capacity) || 1);
    candidates.push({ workload, port, weight });
    total += weight;
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
