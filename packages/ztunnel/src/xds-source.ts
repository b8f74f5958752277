/**
 * The agent's mesh from an xDS server (DISCOVERY=xds, chosen when XDS_ADDRESS is set):
 * @zt/istio's delta ADS client following istio.workload.Address and
 * istio.security.Authorization, each response applied to the store as one MeshDelta.
 * A resource the agent cannot serve is NACKed by name and the rest apply. Readiness waits
 * until both types have had a response applied (wholly, or but for what was NACKed);
 * `/config_dump` `source` shows the stream's state, the last nonce ACKed and the last NACK
 * per type.
 * @zt/istio (gRPC and protobufjs under it) is loaded only when this source is used.
 */
import type { Logger } from "pino";
import type { XdsTypeHandler } from "@zt/istio";
import { ZtError } from "@zt/errors";
import { createMeshStore, EMPTY_SNAPSHOT, serviceKey, type Policy, type Service, type Workload } from "@zt/state";
import type { Config } from "./config.js";
import type { WorkloadSource } from "./workload-source.js";

type Address = { readonly workload: Workload; readonly service?: undefined } | { readonly service: Service; readonly workload?: undefined };

export async function openXdsSource(config: Config, logger: Logger): Promise<WorkloadSource> {
  const istio = await import("@zt/istio");
  const { ADDRESS_TYPE, AUTHORIZATION_TYPE } = istio;
  const address = config.xdsAddress!;
  const log = logger.child({ component: "xds" });
  log.info({ address, altHostname: config.altXdsHostname ?? null, rootCa: config.xdsRootCa }, `workloads, services and policies come from the xDS server at ${address}`);
  const store = createMeshStore(EMPTY_SNAPSHOT);
  const defaults = { trustDomain: config.trustDomain, clusterId: config.clusterId };
  /** Address resource name -> what it is in the store (a workload's uid or a service's key). */
  const addresses = new Map<string, { readonly kind: "workload" | "service"; readonly key: string }>();
  const policies = new Map<string, Policy>();

  const addressHandler: XdsTypeHandler<Address> = {
    decode: (name, body) => {
      const a = istio.decodeAddress(body);
      if (a.workload) {
        const w = istio.workloadFromWire(a.workload, defaults);
        if (w.uid !== name) throw new ZtError("XDS_RESOURCE_INVALID", `workload ${w.uid}: named ${JSON.stringify(name)}, not its uid`);
        return { workload: w };
      }
      if (a.service) {
        const s = istio.serviceFromWire(a.service);
        if (serviceKey(s) !== name) throw new ZtError("XDS_RESOURCE_INVALID", `service ${serviceKey(s)}: named ${JSON.stringify(name)}, not <namespace>/<hostname>`);
        return { service: s };
      }
      throw new ZtError("XDS_RESOURCE_INVALID", "an Address with neither a workload nor a service");
    },
    apply: (upserts, removed) => {
      if (upserts.size === 0 && removed.length === 0) return;
      const workloads: Workload[] = [];
      const services: Service[] = [];
      const removedWorkloads: string[] = [];
      const removedServices: string[] = [];
      const remove = (name: string): void => {
        const was = addresses.get(name);
        if (!was) return;
        addresses.delete(name);
        (was.kind === "workload" ? removedWorkloads : removedServices).push(was.key);
      };
      for (const name of removed) remove(name);
      for (const [name, a] of upserts) {
        // A name that changes kind (a workload, then a service) leaves its old self behind otherwise.
        if (addresses.get(name)?.kind !== (a.workload ? "workload" : "service")) remove(name);
        if (a.workload) workloads.push(a.workload);
        else services.push(a.service);
        addresses.set(name, { kind: a.workload ? "workload" : "service", key: name });
      }
      store.apply({ workloads, services, removedWorkloads, removedServices });
    },
  };

  const authorizationHandler: XdsTypeHandler<Policy> = {
    decode: (name, body) => {
      const p = istio.policyFromWire(istio.decodeAuthorization(body));
      if (`${p.namespace}/${p.name}` !== name) throw new ZtError("XDS_RESOURCE_INVALID", `authorization ${p.namespace}/${p.name}: named ${JSON.stringify(name)}, not <namespace>/<name>`);
      return p;
    },
    apply: (upserts, removed) => {
      if (upserts.size === 0 && removed.length === 0) return;
      for (const name of removed) policies.delete(name);
      for (const [name, p] of upserts) policies.set(name, p);
      store.apply({ policies: [...policies.values()] });
    },
  };

  const client = istio.startXdsClient({
    address,
    rootCaFile: config.xdsRootCa,
    altHostname: config.altXdsHostname,
    tokenFile: config.authToken,
    node: { ip: config.instanceIp, podName: config.podName, podNamespace: config.podNamespace, nodeName: config.nodeName, clusterId: config.clusterId },
    types: new Map<string, XdsTypeHandler<unknown>>([
      [ADDRESS_TYPE, addressHandler as XdsTypeHandler<unknown>],
      [AUTHORIZATION_TYPE, authorizationHandler as XdsTypeHandler<unknown>],
    ]),
    logger: log,
    onSynced: () => log.info({ address, version: store.version, ...store.counts(), onThisNode: store.workloadsOnNode(config.nodeName).length }, "mesh state synced from the xDS server"),
  });

  return {
    store,
    pending: () => client.pending(),
    dump: () => ({ kind: "xds", ...client.status(), ...store.counts() }),
    warnings: () => {
      const s = client.status();
      const out: string[] = [];
      if (s.state !== "connected" && s.lastError) out.push(`the xDS server ${address} is not connected (${s.lastError.code}: ${s.lastError.message}); serving the last state received`);
      if (client.pending().length === 0 && store.workloadsOnNode(config.nodeName).length === 0) {
        out.push(`the xDS server sends no workload on NODE_NAME=${JSON.stringify(config.nodeName)}, so this agent serves no pod (a typo in NODE_NAME?)`);
      }
      return out;
    },
    close: () => client.close(),
  };
}
