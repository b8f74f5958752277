import type net from "node:net";
import type { Logger } from "pino";
import { defaultCaptureParams, installCapture, type Capture, type CaptureParams } from "@zt/capture";
import { sockopt } from "@zt/sockopt";
import { ZtError } from "@zt/errors";
import type { MeshStore } from "@zt/state";
import type { Config } from "./config.js";
import { startHandover, type ControlPorts, type Handover } from "./handover.js";

/**
 * REDIRECT_MODE: how connections reach the agent and how it dials out. `none`: explicit
 * SOCKS5/HBONE only, plain sockets, exclusive listeners. `tproxy`: transparent SO_REUSEPORT
 * listeners, node rules converged at start and handed over to a successor at exit (removed
 * only when none runs), upstream sockets marked and speaking from the client's address.
 */
export interface Redirect {
  /** tproxy: announce this agent on the node (HANDOVER_DIR); the running agents release the control ports. */
  announce(): Promise<void>;
  /** Once this agent's control ports are bound: give them to a successor that announces itself. */
  attachControl(control: ControlPorts): void;
  /** The drain began: this agent is no successor for anyone any more. */
  markDraining(): void;
  /** Converge the rules (after every listener is up); then keep the pod set in sync. */
  start(): Promise<void>;
  /** After the drain: remove the rules, unless another agent of the node runs (it keeps them). */
  stop(): Promise<void>;
  pending(): string[];
  dump(): unknown;
}

/** Throws CAPTURE_UNAVAILABLE before anything is touched when tproxy cannot work here. */
export function createRedirect(config: Config, store: MeshStore, logger: Logger): Redirect {
  const log = logger.child({ component: "capture" });
  if (config.redirectMode === "none") {
    if (!sockopt.available) log.info(`transparent capture is unavailable on this host: ${sockopt.reason}`);
    return {
      announce: async () => {},
      attachControl: () => {},
      markDraining: () => {},
      start: async () => {},
      stop: async () => {},
      pending: () => [],
      dump: () => ({ mode: "none", addon: sockopt.available ? "loaded" : sockopt.reason }),
    };
  }
  if (!sockopt.available) {
    throw new ZtError("CAPTURE_UNAVAILABLE", `REDIRECT_MODE=tproxy needs the socket-option addon, and ${sockopt.reason}; nothing was installed`);
  }
  const params = captureParams(config);
  const mark = params.agentMark;
  const localPods = (): string[] =>
    store
      .workloadsOnNode(config.nodeName)
      .filter((w) => w.protocol === "HBONE")
      .flatMap((w) => w.workloadIps);
  let capture: Capture | undefined;
  let syncing: Promise<void> = Promise.resolve();
  let stopped = false;
  let starting: Promise<void> | undefined;
  let handover: Handover | undefined;

  return {
    async announce() {
      handover = await startHandover({ dir: config.handoverDir, nodeName: config.nodeName, logger });
    },
    attachControl: (control) => handover?.attach(control),
    markDraining: () => handover?.markDraining(),
    start() {
      starting = install();
      return starting;
    },
    async stop() {
      stopped = true;
      // A shutdown during start waits for the install, then removes what it installed.
      await starting?.catch(() => undefined);
      await syncing;
      try {
        if (!capture) return;
        // Asked after the drain, when a successor started alongside has long announced itself.
        if (await handover?.successorRunning()) {
          log.info("another agent of this node is running: capture rules left in force for it");
          return;
        }
        await capture.remove();
        log.info("capture rules removed");
      } catch (err) {
        log.error({ err, code: (err as ZtError).code }, `capture rules not fully removed: ${(err as Error).message}`);
      } finally {
        handover?.close();
      }
    },
    pending: () => (capture || stopped ? [] : ["capture rules"]),
    dump: () => ({
      mode: "tproxy",
      ipset: params.ipset,
      pods: capture?.pods() ?? [],
      agentMark: mark,
      captureMark: params.captureMark,
      routeTable: params.routeTable,
      handover: handover?.dump(),
    }),
  };

  async function install(): Promise<void> {
    const pods = localPods();
    capture = await installCapture(params, pods);
    log.info(
      { pods: pods.length, ipset: params.ipset, outbound: params.outboundPort, inbound: params.inboundPort, plaintext: params.plaintextPort, predecessors: handover?.predecessors ?? 0 },
      "capture rules installed",
    );
    const resync = (): void => {
      syncing = syncing.then(async () => {
        const want = localPods();
        if (stopped || !capture || sameSet(capture.pods(), want)) return;
        try {
          await capture.syncPods(want);
          log.info({ pods: want.length }, "captured pod set updated");
        } catch (err) {
          log.error({ err, code: (err as ZtError).code }, "could not update the captured pod set; the previous set stays in force");
        }
      });
    };
    store.onChange(resync);
    // The workload file may have changed while the rules were being installed.
    resync();
  }
}

function sameSet(have: readonly string[], want: readonly string[]): boolean {
  const w = new Set(want.filter((ip) => !ip.includes(":")));
  return have.length === w.size && have.every((ip) => w.has(ip));
}

export function captureParams(config: Config): CaptureParams {
  const inbound = config.inboundAddr.kind === "addr" ? config.inboundAddr : undefined;
  const specific = [config.outboundAddr.ip, inbound?.ip ?? "0.0.0.0", config.inboundPlaintextAddr.ip].find((ip) => ip !== "0.0.0.0");
  return {
    ...defaultCaptureParams,
    outboundPort: config.outboundAddr.port,
    inboundPort: inbound?.port ?? 15008,
    plaintextPort: config.inboundPlaintextAddr.port,
    onIp: specific ?? "127.0.0.1",
  };
}
