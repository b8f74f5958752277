/** The xDS server's metrics, in the registry given (none: counted, not exported). */
import { Counter, Gauge, Registry } from "prom-client";

export interface XdsMetrics {
  readonly clients: Gauge;
  readonly pushes: Counter<"type">;
  readonly resourcesSent: Counter<"type">;
  readonly nacks: Counter<"type">;
}

export function xdsMetrics(registry: Registry = new Registry()): XdsMetrics {
  const registers = [registry];
  return {
    clients: new Gauge({ name: "controller_xds_clients", help: "Delta xDS streams connected (authenticated)", registers }),
    pushes: new Counter({ name: "controller_xds_pushes_total", help: "Delta xDS responses sent, by type", labelNames: ["type"], registers }),
    resourcesSent: new Counter({ name: "controller_xds_resources_sent_total", help: "Resources sent in delta xDS responses, by type", labelNames: ["type"], registers }),
    nacks: new Counter({ name: "controller_xds_nacks_total", help: "Delta xDS responses refused (NACKed) by a client, by type", labelNames: ["type"], registers }),
  };
}

/** The type's last segment ("Address", "Authorization"), as metric label. */
export const typeLabel = (typeUrl: string): string => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
