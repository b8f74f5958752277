import type net from "node:net";
import { startEcho } from "./echo.js";
import { echoFlow } from "./flows.js";
import { startLoopbackMesh } from "./loopback-mesh.js";
import { explainFlow, printSummary, type SummaryRow } from "./summary.js";

/** Two agents on loopback addresses, the embedded workload file, traffic through SOCKS5. */
export async function runLoopbackDemo(): Promise<number> {
  const mesh = await startLoopbackMesh({ net: 0, nodes: ["node-a", "node-b"] });
  const servers: net.Server[] = [];
  try {
    for (const [ip, port] of [["127.0.1.11", 8080], ["127.0.2.10", 8080], ["127.0.2.20", 8080]] as const) servers.push(await startEcho(ip, port));
    const socksA = { host: mesh.host(0), port: 15080 };
    const sleep = "127.0.1.10";
    const flows = [
      { what: "sleep-a -> echo service VIP 127.0.3.1:80", host: "127.0.3.1", port: 80, expect: true },
      { what: "sleep-a -> echo.default.svc.cluster.local:80", host: "echo.default.svc.cluster.local", port: 80, expect: true },
      { what: "sleep-a -> echo-b pod 127.0.2.10:8080 (other node)", host: "127.0.2.10", port: 8080, expect: true },
      { what: "sleep-a -> echo-a pod 127.0.1.11:8080 (same node)", host: "127.0.1.11", port: 8080, expect: true },
      { what: "sleep-a -> legacy-b 127.0.2.20:8080 (not in mesh)", host: "127.0.2.20", port: 8080, expect: true },
      { what: "sleep-a -> echo-b :9999 (policy deny-9999)", host: "127.0.2.10", port: 9999, expect: false },
    ];
    const rows: SummaryRow[] = [];
    for (const f of flows) {
      const r = await echoFlow(socksA, sleep, f.host, f.port);
      rows.push({ what: f.what, result: r, expectOk: f.expect, ...(f.expect ? {} : { explained: await explainFlow(mesh.agents[0]!, sleep, f.host, f.port) }) });
    }
    await new Promise((r) => setTimeout(r, 200));
    return printSummary(rows, mesh.agents);
  } finally {
    for (const s of servers) s.close();
    await mesh.stop();
  }
}
