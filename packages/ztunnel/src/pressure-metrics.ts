/** Gauges for what the data path holds: descriptors, unconsumed HBONE bytes, what each peer identity holds. */
import { Gauge, type Registry } from "prom-client";
import type { InboundServer, ProxyContext } from "@zt/proxy";

export function registerPressureMetrics(registry: Registry, ctx: ProxyContext, inbound: InboundServer): void {
  new Gauge({
    name: "ztunnel_data_path_descriptors",
    help: "Descriptors the data path holds (in_use) and may hold (capacity: the open-files limit minus the reserve)",
    labelNames: ["state"],
    registers: [registry],
    // The workers share one budget: each reports all of it.
    aggregator: "first",
    collect() {
      const s = ctx.fds.stats();
      this.set({ state: "in_use" }, s.inUse);
      this.set({ state: "capacity" }, s.capacity);
    },
  });
  new Gauge({
    name: "ztunnel_hbone_held_bytes",
    help: "Bytes HBONE connections received and their destinations have not taken yet",
    registers: [registry],
    collect() {
      this.set(ctx.receiveBudget.stats().heldBytes);
    },
  });
  new Gauge({
    name: "ztunnel_hbone_throttled_connections",
    help: "HBONE connections whose window is held back because they hold unconsumed bytes",
    registers: [registry],
    collect() {
      this.set(ctx.receiveBudget.stats().throttled);
    },
  });
  new Gauge({
    name: "ztunnel_hbone_peer_connections",
    help: "Inbound HBONE connections open per peer identity",
    labelNames: ["source_principal"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [id, u] of inbound.limits.usage()) if (u.connections > 0) this.set({ source_principal: id }, u.connections);
    },
  });
  new Gauge({
    name: "ztunnel_hbone_peer_streams",
    help: "Inbound HBONE streams open per peer identity",
    labelNames: ["source_principal"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [id, u] of inbound.limits.usage()) if (u.streams > 0) this.set({ source_principal: id }, u.streams);
    },
  });
  new Gauge({
    name: "ztunnel_hbone_peer_resets",
    help: "Inbound HBONE streams a peer identity reset before they were served, since start (rapid reset shows here)",
    labelNames: ["source_principal"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [id, u] of inbound.limits.usage()) if (u.resets > 0) this.set({ source_principal: id }, u.resets);
    },
  });
  new Gauge({
    name: "ztunnel_hbone_peer_refused",
    help: "Inbound HBONE streams refused to a peer identity (bad request, policy, caps), since start",
    labelNames: ["source_principal"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [id, u] of inbound.limits.usage()) if (u.refused > 0) this.set({ source_principal: id }, u.refused);
    },
  });
}
