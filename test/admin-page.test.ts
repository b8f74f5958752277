import { existsSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { loopbackEnv, startAgentProcess, type AgentProcess } from "@zt/harness";
import { openEcho, type EchoConnection } from "./support/echo-conn.js";
import { meshYaml, workloadDir } from "./support/mesh-file.js";

// The admin page at / in headless Chromium (Debian's, /usr/bin/chromium; CI installs it),
// against a real agent on 127.98.1.1: the health section shows readiness and this node's
// certificates; a connection through the mesh (SOCKS5 → local-echo over the agent's own
// HBONE inbound) appears as rows, its byte counts grow as bytes flow, and the rows go when
// it closes. A workload whose name is HTML is shown as text. Last, the agent drains: the
// page says so, and lists what is still open as draining. Explain from the page: a verdict
// with its policies, and a malformed query's answer.
const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const NET = 98;
const A = `127.${NET}.1`;
const HOST = `${A}.1`;
const ADMIN = `${HOST}:15000`;
const SLEEP = "spiffe://cluster.local/ns/default/sa/sleep";
const ECHO = "spiffe://cluster.local/ns/default/sa/echo";
const EVIL = `<img src=x onerror="window.__xss=1">`;
const files = workloadDir();
const meshFile = files.write(
  "mesh.yaml",
  meshYaml(NET).replace("workloads:\n", `workloads:\n- {name: '${EVIL}', namespace: default, serviceAccount: sleep, workloadIps: ["${A}.13"], protocol: HBONE, node: node-a}\n`),
);
let agent: AgentProcess;
let echo: net.Server;
let browser: Browser;
let page: Page;
const problems: string[] = [];

beforeAll(async () => {
  // Never a silent skip: without the browser this test cannot say anything about the page.
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is not installed at ${CHROMIUM}: apt-get install -y chromium (.ci/run installs it), or set CHROMIUM_PATH`);
  // A drain long enough to watch (the last test).
  agent = await startAgentProcess("node-a", { ...loopbackEnv(HOST, `${files.dir}/ca`), LOCAL_XDS_PATH: meshFile, DRAIN_TIMEOUT: "30s" });
  echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(8080, `${A}.11`, () => r()));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  page = await browser.newPage();
  page.on("console", (m) => void (m.type() === "error" && problems.push(`console: ${m.text()}`)));
  page.on("pageerror", (e) => void problems.push(`page error: ${e.message}`));
  await page.goto(`http://${ADMIN}/`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  echo?.close();
  await agent?.stop();
});

/** A connection from `from` to local-echo:8080 that has echoed `hello`. */
async function open(from: string): Promise<EchoConnection & { src: string }> {
  const c = await openEcho({ host: HOST, port: 15080 }, from, { host: `${A}.11`, port: 8080 });
  return { ...c, src: `${from}:${c.port}` };
}

const row = (direction: string, src: string, extra = ""): string => `#connections tbody tr[data-direction="${direction}"][data-src="${src}"]${extra}`;
const cells = (selector: string): Promise<string[]> => page.$$eval(`${selector} td`, (tds) => tds.map((t) => t.textContent ?? ""));

describe("the admin page", () => {
  test("the health section: ready, this node's certificates with their expiry, the workload file", async () => {
    await page.waitForFunction(() => document.getElementById("readiness")?.textContent === "ready", undefined, { timeout: 10_000 });
    const certs = await page.$$eval("#certificates tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")));
    expect(certs.map((c) => c[0]).sort()).toEqual([ECHO, SLEEP]);
    for (const c of certs) {
      expect(c[1]).toBe("available");
      expect(c[2]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+(h \d+m|d \d+h)\)$/);
      expect(c[3]).toMatch(/\(in /);
    }
    const source = Object.fromEntries(await page.$$eval("#source tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? ""))));
    expect(source).toMatchObject({ kind: "file", state: "current", path: meshFile });
    expect(Object.fromEntries(await page.$$eval("#capture tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? ""))))).toMatchObject({ mode: "none" });
  }, 30_000);

  test("a connection appears with both sides and its bytes, its counts grow, the HBONE pool shows its peer, and it goes when closed", async () => {
    const c = await open(`${A}.10`);
    const out = row("outbound", c.src);
    await page.waitForSelector(out, { timeout: 10_000 });
    await page.waitForSelector(row("inbound", c.src), { timeout: 10_000 });
    expect(await cells(out)).toEqual(["outbound", "open", `${c.src} (default/sleep)`, SLEEP, `${A}.11:8080 (default/local-echo)`, ECHO, "-", `${A}.11:15008`, "5 B", "5 B", expect.stringMatching(/^\d+s$/)]);
    await page.waitForFunction((peer) => [...document.querySelectorAll("#pool tbody tr td:first-child")].some((td) => td.textContent === peer), `${A}.11:15008`, { timeout: 10_000 });

    await c.echo("x".repeat(2000));
    await page.waitForSelector(row("outbound", c.src, '[data-sent="2005"][data-recv="2005"]'), { timeout: 10_000 });
    expect((await cells(out)).slice(8, 10)).toEqual(["2.0 KiB", "2.0 KiB"]);

    c.sock.destroy();
    await page.waitForSelector(out, { state: "detached", timeout: 10_000 });
    await page.waitForSelector(row("inbound", c.src), { state: "detached", timeout: 10_000 });
  }, 60_000);

  test("names from the cluster are text, never markup", async () => {
    const c = await open(`${A}.13`);
    const out = row("outbound", c.src);
    await page.waitForSelector(out, { timeout: 10_000 });
    expect((await cells(out))[2]).toBe(`${c.src} (default/${EVIL})`);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.$$("#connections img")).toEqual([]);
    c.sock.destroy();
    await page.waitForSelector(out, { state: "detached", timeout: 10_000 });
  }, 60_000);

  test("the page ran without a script error or a refused fetch", () => {
    expect(problems).toEqual([]);
  });

  // After the check above: the malformed query's 400 is a console error of the browser's.
  test("explain: a connection's verdict with the policies weighed; a malformed address gets the agent's answer", async () => {
    await page.fill("#x-src", `${A}.10`);
    await page.fill("#x-dst", `${A}.11:9999`);
    await page.click("#x-go");
    await page.waitForFunction(() => document.getElementById("x-verdict")?.textContent === "DENY", undefined, { timeout: 10_000 });
    expect(await page.textContent("#x-summary")).toMatch(/denied by default\/deny-9999 \(denied-by-policy\)/);
    expect(await cells("#x-policies tbody tr")).toEqual(["default/deny-9999", "Deny", "no", "rule 0"]);
    await page.fill("#x-dst", "nowhere");
    await page.click("#x-go");
    await page.waitForFunction(() => /^EXPLAIN_QUERY_INVALID: dst "nowhere"/.test(document.getElementById("x-summary")?.textContent ?? ""), undefined, { timeout: 10_000 });
    expect(await page.textContent("#x-verdict")).toBe("");
  }, 30_000);

  test("while the agent drains, readiness says so and what is still open is listed as draining", async () => {
    const c = await open(`${A}.10`);
    await page.waitForSelector(row("outbound", c.src), { timeout: 10_000 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: HOST, port: 15000, method: "POST", path: "/quitquitquit", agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(200);
    await page.waitForSelector(row("outbound", c.src, '[data-state="draining"]'), { timeout: 10_000 });
    await page.waitForSelector(row("inbound", c.src, '[data-state="draining"]'), { timeout: 10_000 });
    await page.waitForFunction(() => /^not ready: waiting for .*draining/.test(document.getElementById("readiness")?.textContent ?? ""), undefined, { timeout: 10_000 });
    expect(await page.textContent("#draining")).toBe("draining: connections are given DRAIN_TIMEOUT to finish");
    // The last connection closes: the drain is over and the agent exits.
    c.sock.destroy();
    expect(await agent.exited).toBe(0);
  }, 60_000);
});
