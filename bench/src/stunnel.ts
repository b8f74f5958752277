/**
 * The TLS-tunnel baseline: a pair of stunnel4 processes in the foreground.
 *   client -> stunnel client (accept 127.0.0.1:A, TLS) -> stunnel server (accept 127.0.0.1:B,
 *   TLS 1.3, client certificate required and verified) -> bench server.
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

function makeCerts(dir: string): void {
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

function conf(dir: string, o: { client: boolean; accept: number; connect: number }): string {
  const name = o.client ? "client" : "server";
  return [
    "foreground = yes",
    "syslog = no",
    "pid =",
    "debug = 4",
    ...(o.client ? ["client = yes"] : []),
    "[bench]",
    `accept = 127.0.0.1:${o.accept}`,
    `connect = 127.0.0.1:${o.connect}`,
    `cert = ${path.join(dir, `${name}.crt`)}`,
    `key = ${path.join(dir, `${name}.key`)}`,
    `CAfile = ${path.join(dir, "ca.crt")}`,
    "verifyChain = yes",
    ...(o.client ? ["checkHost = bench-server"] : ["requireCert = yes"]),
    "sslVersionMin = TLSv1.3",
    "socket = l:TCP_NODELAY=1",
    "socket = r:TCP_NODELAY=1",
    "",
  ].join("\n");
}

/** Start the pair in front of the bench server at 127.0.0.1:serverPort; `check` proves the path works. */
export async function startStunnelPair(serverPort: number, check: (port: number) => Promise<void>): Promise<StunnelPair> {
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
    const a = await freePort("127.0.0.1");
    let b = await freePort("127.0.0.1");
    for (let i = 0; b === a && i < 10; i++) b = await freePort("127.0.0.1");
    writeFileSync(path.join(dir, "server.conf"), conf(dir, { client: false, accept: b, connect: serverPort }));
    writeFileSync(path.join(dir, "client.conf"), conf(dir, { client: true, accept: a, connect: b }));
    for (const which of ["server", "client"]) {
      const p = spawn(STUNNEL_BIN, [path.join(dir, `${which}.conf`)], { stdio: ["ignore", "pipe", "pipe"] });
      p.stdout!.on("data", (c: Buffer) => (err += c.toString()));
      p.stderr!.on("data", (c: Buffer) => (err += c.toString()));
      procs.push(p);
    }
    // Wait until the whole chain carries an echo (bounded: 50 tries, ~5 s).
    let last: unknown;
    for (let i = 0; i < 50; i++) {
      if (procs.some((p) => p.exitCode !== null)) throw new Error(`stunnel exited: ${err}`);
      try {
        await check(a);
        last = undefined;
        break;
      } catch (e) {
        last = e;
        await sleep(100);
      }
    }
    if (last !== undefined) throw new Error(`stunnel pair not working: ${(last as Error).message}\n${err}`);
    // Client side first, as for the mesh (agent A, then agent B).
    return { port: a, pids: [procs[1]!.pid!, procs[0]!.pid!], stderr: () => err, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
