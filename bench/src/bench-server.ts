/**
 * The bench server (src/server.ts) from the runner's side: start it as a child process, and
 * ask it things over IPC.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** How a watched connection ended, and when (ms on the monotonic clock): the server's and the clients' alike. */
export interface Ending {
  how: "reset" | "fin" | "other";
  ms: number;
  code?: string;
}

/** The bench server as a child process, with one listener per "host:port" (port 0 = any); resolves with the ports chosen. */
export async function startBenchServer(addrs: readonly string[]): Promise<{ proc: ChildProcess; ports: number[] }> {
  const proc = fork(fileURLToPath(new URL("./server.js", import.meta.url)), [...addrs], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const msg = await new Promise<{ ready: boolean; ports?: number[]; error?: string }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("bench server did not start in 10 s")), 10_000);
    proc.once("message", (m) => {
      clearTimeout(t);
      resolve(m as { ready: boolean; ports?: number[]; error?: string });
    });
    proc.once("exit", (code) => reject(new Error(`bench server exited (${code})`)));
  });
  if (!msg.ready || !msg.ports) throw new Error(`bench server failed: ${msg.error}`);
  return { proc, ports: msg.ports };
}

/** Send { cmd } to the bench server and wait for its { reply: cmd }. */
export function ask<T>(proc: ChildProcess, cmd: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const on = (m: unknown): void => {
      if (typeof m !== "object" || m === null || (m as { reply?: unknown }).reply !== cmd) return;
      clearTimeout(t);
      proc.off("message", on);
      resolve(m as T);
    };
    const t = setTimeout(() => {
      proc.off("message", on);
      reject(new Error(`bench server: no answer to ${cmd} in 10 s`));
    }, 10_000);
    proc.on("message", on);
    proc.send({ cmd });
  });
}
