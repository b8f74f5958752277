/**
 * The node's agents find each other (REDIRECT_MODE=tproxy): each listens on its own unix
 * socket `<HANDOVER_DIR>/<id>.sock`, in a directory every agent of the node mounts from
 * the host. A starting agent announces itself to every live one (they give it the control
 * ports), and a stopping agent asks whether another one still runs (then it leaves the
 * node rules in force for it). Newline-delimited JSON, one request per connection:
 *   {"op":"status"}                 -> {"id","node","state"}, then the socket ends
 *   {"op":"announce","id","node"}   -> {"ok":true,"id","state"} once the control ports are
 *                                      released; the announcer keeps the connection open
 *                                      for its life and may send {"op":"draining"} later.
 * Pids are not identities (pods have their own pid namespaces); the socket is.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import { ZtError } from "@zt/errors";

export type AgentState = "starting" | "running" | "draining";

/** The control listeners (admin, stats, readiness): the newest live agent of a node holds them. */
export interface ControlPorts {
  release(): Promise<void>;
  /** Rejects (e.g. BIND_FAILED) while another process still holds a port; retried. */
  retake(): Promise<void>;
}

export interface Handover {
  readonly id: string;
  /** Live agents of this node that were running when this one started. */
  readonly predecessors: number;
  /** From now on a successor's announcement makes this agent release its control ports. */
  attach(control: ControlPorts): void;
  /** Status answers "draining" from now on, and predecessors are told. */
  markDraining(): void;
  /** Whether another live agent of this node, not draining, answers on the directory. */
  successorRunning(): Promise<boolean>;
  close(): void;
  dump(): unknown;
}

export interface HandoverOptions {
  readonly dir: string;
  readonly nodeName: string;
  readonly logger: Logger;
  /** How long a peer may take to answer (default 10 s for an announcement, 1 s for a status). */
  readonly announceTimeoutMs?: number;
  readonly statusTimeoutMs?: number;
}

interface Message {
  op?: string;
  ok?: boolean;
  id?: string;
  node?: string;
  state?: AgentState;
  reason?: string;
}

const RETAKE_EVERY_MS = 250;

/** Create this agent's socket, clear stale ones, announce to the live ones (they release the control ports). */
export async function startHandover(opts: HandoverOptions): Promise<Handover> {
  const log = opts.logger.child({ component: "handover" });
  const id = randomBytes(4).toString("hex");
  const own = path.join(opts.dir, `${id}.sock`);
  try {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ZtError("HANDOVER_UNAVAILABLE", `cannot create HANDOVER_DIR ${opts.dir} (${(err as Error).message}); REDIRECT_MODE=tproxy needs it to hand the node rules over across restarts`, { cause: err });
  }
  let state: AgentState = "starting";
  let control: ControlPorts | undefined;
  let released = false;
  let retaking = false;
  let closed = false;
  /** Agents that announced themselves to this one, and whether each is draining. */
  const successors = new Map<net.Socket, { id: string; draining: boolean }>();
  const waitingForControl: (() => void)[] = [];
  const predecessorLinks = new Set<net.Socket>();
  // Control-port changes run one after the other: a release waits for a retake under way.
  let controlOps: Promise<void> = Promise.resolve();
  const serially = (f: () => Promise<void>): Promise<void> => (controlOps = controlOps.then(f, f));

  const server = net.createServer((sock) => {
    sock.on("error", () => {});
    readMessages(sock, (m) => {
      if (m.op === "status") {
        sock.end(line({ id, node: opts.nodeName, state }));
      } else if (m.op === "announce") {
        if (m.node !== opts.nodeName) {
          sock.end(line({ ok: false, reason: `this socket belongs to node ${opts.nodeName}, not ${String(m.node)}` }));
          return;
        }
        const peer = { id: String(m.id), draining: false };
        successors.set(sock, peer);
        sock.once("close", () => {
          successors.delete(sock);
          if (closed) return;
          log.info({ successor: peer.id }, "successor gone");
          maybeRetake();
        });
        const answer = (): void => {
          void serially(async () => {
            // Queued while this agent started: a successor gone meanwhile gets nothing (its close found nothing to retake).
            if (!control || !successors.has(sock)) return;
            // Every time (closing what is closed is a no-op): a retake may have bound some of them again.
            const first = !released;
            released = true;
            await control.release();
            if (first) log.info({ successor: peer.id }, "successor announced itself: control ports released to it");
          })
            .catch((err: unknown) => log.error({ err }, "could not release the control ports to a successor"))
            .then(() => sock.write(line({ ok: true, id, state })));
        };
        if (control) answer();
        else waitingForControl.push(answer);
      } else if (m.op === "draining") {
        const peer = successors.get(sock);
        if (peer) peer.draining = true;
        maybeRetake();
      }
    });
  });
  try {
    unlinkQuiet(own);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(own, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    throw new ZtError("HANDOVER_UNAVAILABLE", `cannot listen on ${own} (${(err as Error).message}); REDIRECT_MODE=tproxy needs HANDOVER_DIR to be writable`, { cause: err });
  }

  let predecessors = 0;
  for (const peer of peers(opts.dir, own, log)) {
    let sock: net.Socket | undefined;
    try {
      sock = await connectUnix(peer, opts.announceTimeoutMs ?? 10_000);
      sock.write(line({ op: "announce", id, node: opts.nodeName }));
      const reply = await firstMessage(sock, opts.announceTimeoutMs ?? 10_000);
      if (!reply.ok) {
        sock.destroy();
        log.warn({ peer }, `an agent in HANDOVER_DIR refused the announcement: ${reply.reason ?? "no reason"}`);
        continue;
      }
      predecessors++;
      const link = sock;
      predecessorLinks.add(link);
      link.once("close", () => predecessorLinks.delete(link));
      // Keep reading (nothing more is sent) so that the predecessor's exit is noticed.
      sock.resume();
      log.info({ predecessor: reply.id, state: reply.state }, "announced to a running agent of this node; it released the control ports");
    } catch (err) {
      // A peer that took the announcement but did not answer must not count this agent as its successor.
      sock?.destroy();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ECONNREFUSED") {
        unlinkQuiet(peer);
        log.info({ peer }, "removed the socket of an agent that is gone (crashed)");
      } else if (code !== "ENOENT") {
        log.warn({ peer, err }, "an agent in HANDOVER_DIR did not answer the announcement; going on");
      }
    }
  }
  warnWithoutMigration(log);

  function maybeRetake(): void {
    if (retaking || !released || closed || state === "draining" || !control) return;
    if ([...successors.values()].some((s) => !s.draining)) return;
    retaking = true;
    log.info("no live successor holds the control ports any more: taking them back");
    const attempt = (): void => {
      void serially(async () => {
        if (!released || closed || state === "draining" || [...successors.values()].some((s) => !s.draining)) return;
        await control!.retake();
        released = false;
        log.info("control ports taken back");
      }).then(
        () => {
          retaking = false;
        },
        () => setTimeout(attempt, RETAKE_EVERY_MS).unref(),
      );
    };
    attempt();
  }

  return {
    id,
    predecessors,
    attach(c) {
      control = c;
      if (state === "starting") state = "running";
      for (const f of waitingForControl.splice(0)) f();
    },
    markDraining() {
      state = "draining";
      for (const s of predecessorLinks) s.write(line({ op: "draining" }));
    },
    async successorRunning() {
      for (const peer of peers(opts.dir, own, log)) {
        const status = await askStatus(peer, opts.statusTimeoutMs ?? 1000).catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ECONNREFUSED") unlinkQuiet(peer);
          return undefined;
        });
        if (status && status.node === opts.nodeName && status.state !== "draining") return true;
      }
      return false;
    },
    close() {
      closed = true;
      server.close();
      unlinkQuiet(own);
      for (const s of [...predecessorLinks, ...successors.keys()]) s.destroy();
    },
    dump: () => ({ id, dir: opts.dir, state, predecessors, successors: [...successors.values()], controlPorts: released ? "released to a successor" : "held", tcpMigrateReq: tcpMigrateReq() }),
  };
}

/** Other sockets in the directory (live or stale). */
function peers(dir: string, own: string, log: Logger): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith(".sock"))
      .map((f) => path.join(dir, f))
      .filter((p) => p !== own);
  } catch (err) {
    log.warn({ err, dir }, "cannot list HANDOVER_DIR");
    return [];
  }
}

async function askStatus(peer: string, timeoutMs: number): Promise<Message> {
  const sock = await connectUnix(peer, timeoutMs);
  try {
    sock.write(line({ op: "status" }));
    return await firstMessage(sock, timeoutMs);
  } finally {
    sock.destroy();
  }
}

function connectUnix(p: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(p);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`no answer from ${p} within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.off("error", onError);
      sock.on("error", () => {});
      resolve(sock);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    sock.once("error", onError);
  });
}

function firstMessage(sock: net.Socket, timeoutMs: number): Promise<Message> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    const onClose = (): void => {
      done();
      reject(Object.assign(new Error("the agent closed the connection without answering"), { code: "ECONNRESET" }));
    };
    const stop = readMessages(sock, (m) => {
      done();
      resolve(m);
    });
    sock.once("close", onClose);
    function done(): void {
      clearTimeout(timer);
      stop();
      sock.off("close", onClose);
    }
  });
}

/** Calls `onMessage` for each JSON line; returns a function that stops listening. */
function readMessages(sock: net.Socket, onMessage: (m: Message) => void): () => void {
  let buf = "";
  const onData = (chunk: Buffer): void => {
    buf += chunk.toString("utf8");
    if (buf.length > 64 * 1024) return void sock.destroy();
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        onMessage(JSON.parse(text) as Message);
      } catch {
        sock.destroy();
        return;
      }
    }
  };
  sock.on("data", onData);
  return () => sock.off("data", onData);
}

const line = (m: Message): string => `${JSON.stringify(m)}\n`;

function unlinkQuiet(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    // already gone
  }
}

/**
 * Closing a SO_REUSEPORT listener resets the connections still queued on it unless the
 * kernel migrates them to the successor's listener (net.ipv4.tcp_migrate_req, Linux 5.14+).
 */
function warnWithoutMigration(log: Logger): void {
  const value = tcpMigrateReq();
  if (value === "unsupported") {
    log.warn("this kernel has no net.ipv4.tcp_migrate_req (Linux < 5.14): connections queued on this agent's listeners when it stops are reset");
  } else if (value !== "1") {
    log.warn("net.ipv4.tcp_migrate_req is 0: connections queued on this agent's listeners when it stops are reset instead of moving to its successor; set it to 1 on the node (the DaemonSet's init container does)");
  }
}

/** The value of net.ipv4.tcp_migrate_req in this network namespace, for dumps ("unsupported" before Linux 5.14). */
export function tcpMigrateReq(): string {
  try {
    return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
  } catch {
    return "unsupported";
  }
}
