import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { startHandover, type ControlPorts, type Handover } from "./handover.js";
import { createLogger } from "./logging.js";

// Several agents' handovers in one process, over real unix sockets in a temp directory.
const logger = createLogger({ logFormat: "json", logLevel: "info" }, new Writable({ write: (_c, _e, cb) => cb() }));
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "zt-handover-"));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function agent(d: string, nodeName = "node-a"): Promise<Handover> {
  const h = await startHandover({ dir: d, nodeName, logger, announceTimeoutMs: 2000, statusTimeoutMs: 500 });
  cleanup.push(() => h.close());
  return h;
}

/** Control ports that record what was asked of them; `busy` makes a retake fail (the port still taken). */
function control(): ControlPorts & { log: string[]; busy: boolean } {
  const c = {
    log: [] as string[],
    busy: false,
    release: async () => void c.log.push("release"),
    retake: async () => {
      c.log.push("retake");
      if (c.busy) throw Object.assign(new Error("address in use"), { code: "BIND_FAILED" });
    },
  };
  return c;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

describe("handover between the agents of a node", () => {
  it("a starting agent gets the control ports; the old one sees a successor until it goes, then takes them back", async () => {
    const d = dir();
    const old = await agent(d);
    const oldPorts = control();
    old.attach(oldPorts);
    expect(old.predecessors).toBe(0);
    expect(await old.successorRunning()).toBe(false);

    const next = await agent(d);
    expect(next.predecessors).toBe(1);
    expect(oldPorts.log).toEqual(["release"]);
    expect(await old.successorRunning()).toBe(true);

    next.close();
    await until("control ports taken back", () => oldPorts.log.includes("retake"));
    expect(await old.successorRunning()).toBe(false);
    expect(readdirSync(d)).toHaveLength(1);
  });

  it("a draining agent is no successor; the old one then takes the control ports back once they are free", async () => {
    const d = dir();
    const old = await agent(d);
    const oldPorts = control();
    old.attach(oldPorts);
    const next = await agent(d);
    next.attach(control());
    oldPorts.busy = true;
    next.markDraining();
    await until("a first retake attempt", () => oldPorts.log.filter((x) => x === "retake").length >= 1);
    expect(await old.successorRunning()).toBe(false);
    // The draining agent still holds the ports: retried until they are free.
    oldPorts.busy = false;
    await until("a retake that succeeds", () => oldPorts.log.filter((x) => x === "retake").length >= 2);
    // The old agent runs on: for the draining one, it is the successor.
    expect(await next.successorRunning()).toBe(true);
  });

  it("a successor announcing during a failing retake still gets every control port released", async () => {
    const d = dir();
    const old = await agent(d);
    const oldPorts = control();
    old.attach(oldPorts);
    const first = await agent(d);
    // The retake after the first successor left fails part-way (say readiness bound, admin still taken).
    oldPorts.busy = true;
    first.close();
    await until("a failed retake", () => oldPorts.log.includes("retake"));
    const second = await agent(d);
    expect(second.predecessors).toBe(1);
    expect(oldPorts.log.filter((x) => x === "release")).toHaveLength(2);
    expect(oldPorts.log.at(-1)).toBe("release");
  });

  it("an announcement waits until the running agent has its control ports", async () => {
    const d = dir();
    const old = await agent(d);
    const oldPorts = control();
    const next = agent(d);
    await new Promise((r) => setTimeout(r, 200));
    expect(oldPorts.log).toEqual([]);
    old.attach(oldPorts);
    expect((await next).predecessors).toBe(1);
    expect(oldPorts.log).toEqual(["release"]);
  });

  it("a successor that gave up waiting for a starting agent gets nothing once that agent has its control ports", async () => {
    const d = dir();
    const old = await agent(d);
    const oldPorts = control();
    // The announcement times out while the old agent is still starting; the successor goes on without it.
    const hasty = await startHandover({ dir: d, nodeName: "node-a", logger, announceTimeoutMs: 200, statusTimeoutMs: 500 });
    cleanup.push(() => hasty.close());
    expect(hasty.predecessors).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    old.attach(oldPorts);
    await new Promise((r) => setTimeout(r, 200));
    // The old agent keeps its ports: nobody would ever give them back.
    expect(oldPorts.log).toEqual([]);
  });

  it("stale sockets of crashed agents are removed and count as nobody; another node's agent is refused", async () => {
    const d = dir();
    // A socket file nobody listens on any more: its process was killed (SIGKILL) while listening.
    const stale = path.join(d, "deadbeef.sock");
    spawnSync(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`]);
    expect(readdirSync(d)).toEqual(["deadbeef.sock"]);
    const a = await agent(d);
    expect(a.predecessors).toBe(0);
    expect(readdirSync(d)).toEqual([`${a.id}.sock`]);
    const other = await agent(d, "node-b");
    expect(other.predecessors).toBe(0);
    expect(await a.successorRunning()).toBe(false);
  });
});
