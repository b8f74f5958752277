/**
 * The TLS-tunnel baseline: a pair of stunnel4 processes in the foreground.
 *   client -> stunnel client (accept 127.0.0.1:A, TLS) -> stunnel server (accept 127.0.0.1:B,
 *   TLS 1.3, client certificate required and verified) -> bench server.
 * The capture benchmark runs a pair in two node namespaces (`startStunnel`).
 * An ad-hoc RSA-2048 CA and ECDSA P-256 leaf certificates (as the mesh's: an RSA root, P-256
 * workload keys) are made with the openssl CLI in a temp dir that is removed afterwards.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, sleep } from "./util.js";

export interface StunnelPair {
  /** Where clients connect (the stunnel client's accept port on 127.0.0.1). */
  readonly port: number;
  readonly pids: readonly number[];
  /** What the two processes printed (debug = 4: warnings and errors only). */
  stderr(): string;
  stop(): Promise<void>;
}

export const STUNNEL_BIN = "/usr/bin/stunnel4";

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

export function makeCerts(dir: string): void {
  writeFileSync(
    path.join(dir, "ext.cnf"),
    [
      "[srv]",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth",
      "subjectAltName = DNS:bench-server, IP:127.0.0.1",
      "[cli]",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = clientAuth",
      "subjectAltName = DNS:bench-client",
      "",
    ].join("\n"),
  );
  openssl(dir, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench-ca",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  for (const [name, section] of [["server", "srv"], ["client", "cli"]] as const) {
    openssl(dir, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=bench-${name}`]);
    openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "2",
      "-extfile", "ext.cnf", "-extensions", section]);
  }
}

/** One tunnel of a pair: where the client side accepts, where the server side accepts and connects. */
export interface StunnelService {
  readonly clientAccept: string;
  readonly serverAccept: string;
  readonly connect: string;
}

function conf(dir: string, client: boolean, services: readonly StunnelService[]): string {
  const name = client ? "client" : "server";
  return [
    "foreground = yes",
    "syslog = no",
    "pid =",
    "debug = 4",
    ...(client ? ["client = yes"] : []),
    ...services.flatMap((svc, i) => [
      `[bench${i}]`,
      `accept = ${client ? svc.clientAccept : svc.serverAccept}`,
      `connect = ${client ? svc.serverAccept : svc.connect}`,
      `cert = ${path.join(dir, `${name}.crt`)}`,
      `key = ${path.join(dir, `${name}.key`)}`,
      `CAfile = ${path.join(dir, "ca.crt")}`,
      "verifyChain = yes",
      ...(client ? ["checkHost = bench-server"] : ["requireCert = yes"]),
      "sslVersionMin = TLSv1.3",
      "socket = l:TCP_NODELAY=1",
      "socket = r:TCP_NODELAY=1",
    ]),
    "",
  ].join("\n");
}

/** How a side of the pair is started (default: a child of this process). */
export type StunnelSpawn = (side: "client" | "server", argv: string[]) => ChildProcess;

/** Start the pair in front of the bench server at 127.0.0.1:serverPort; `check` proves the path works. */
export async function startStunnelPair(serverPort: number, check: (port: number) => Promise<void>): Promise<StunnelPair> {
  const a = await freePort("127.0.0.1");
  let b = await freePort("127.0.0.1");
  for (let i = 0; b === a && i < 10; i++) b = await freePort("127.0.0.1");
  const pair = await startStunnel([{ clientAccept: `127.0.0.1:${a}`, serverAccept: `127.0.0.1:${b}`, connect: `127.0.0.1:${serverPort}` }], () => check(a));
  return { ...pair, port: a };
}

/**
 * Start a pair carrying `services` (the sides spawned by `spawn`, e.g. inside two network
 * namespaces); resolves once `check` succeeds (bounded: 50 tries, ~5 s).
 */
export async function startStunnel(
  services: readonly StunnelService[],
  check: () => Promise<void>,
  spawnSide: StunnelSpawn = (_side, argv) => spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] }),
): Promise<Omit<StunnelPair, "port">> {
  const dir = mkdtempSync(path.join(tmpdir(), "zt-bench-stunnel-"));
  const procs: ChildProcess[] = [];
  let err = "";
  const stop = async (): Promise<void> => {
    await Promise.all(
      procs.map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise<void>((r) => p.once("exit", () => r()));
        p.kill("SIGTERM");
        const t = setTimeout(() => p.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(t);
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    makeCerts(dir);
    for (const side of ["server", "client"] as const) {
      writeFileSync(path.join(dir, `${side}.conf`), conf(dir, side === "client", services));
      const p = spawnSide(side, [STUNNEL_BIN, path.join(dir, `${side}.conf`)]);
      p.stdout?.on("data", (c: Buffer) => (err += c.toString()));
      p.stderr?.on("data", (c: Buffer) => (err += c.toString()));
      procs.push(p);
    }
    let last: unknown;
    for (let i = 0; i < 50; i++) {
      if (procs.some((p) => p.exitCode !== null)) throw new Error(`stunnel exited: ${err}`);
      try {
        await check();
        last = undefined;
        break;
      } catch (e) {
        last = e;
        await sleep(100);
      }
    }
    if (last !== undefined) throw new Error(`stunnel pair not working: ${(last as Error).message}\n${err}`);
    // Client side first, as for the mesh (agent A, then agent B).
    return { pids: [procs[1]!.pid!, procs[0]!.pid!], stderr: () => err, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
