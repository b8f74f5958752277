/**
 * The admin's page at `/`: the summary, then the agent's health and its live connections,
 * refreshed every second from `/debug/status` and `/debug/connections` by a small inline
 * script (no framework), and a connection explained on request (`/debug/explain`). Workload
 * names and the rest come from the cluster: the page builds its DOM with textContent only,
 * never innerHTML, and its Content-Security-Policy lets nothing run but this script (by
 * hash) and fetch nothing but its own origin.
 */
import { createHash } from "node:crypto";

/** Connections the page shows at most (the rest are counted). */
const PAGE_ROWS = 1000;

const STYLE = `
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h2{margin-top:1.5em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
th,td{text-align:left;padding:.15em .8em .15em 0;vertical-align:top}
td.n{text-align:right}
#connections td,#connections th{font-size:.9em;white-space:nowrap}
.bad{color:#a00}.good{color:#070}.muted{color:#777}
`;

const SCRIPT = `"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var text = function (v) {
    if (v === null || v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) return "-";
    if (Array.isArray(v) && v.every(function (x) { return typeof x === "string"; })) return v.join("; ");
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  };
  function row(cells, cls) {
    var tr = document.createElement("tr");
    cells.forEach(function (c, i) {
      var td = document.createElement("td");
      td.textContent = text(c);
      if (cls && cls[i]) td.className = cls[i];
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(id, rows) {
    var body = $(id).tBodies[0];
    body.replaceChildren.apply(body, rows);
  }
  function pairs(id, obj) {
    fill(id, Object.keys(obj || {}).map(function (k) { return row([k, obj[k]]); }));
  }
  function bytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + u[i];
  }
  function age(ms) {
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + m + "m" : m > 0 ? m + "m " + s % 60 + "s" : s + "s";
  }
  function side(p) {
    return p.workload ? p.addr + " (" + (p.namespace || "?") + "/" + p.workload + ")" : p.addr;
  }
  function until(t) {
    if (!t) return null;
    var ms = Date.parse(t) - Date.now();
    return t + (ms > 0 ? " (in " + age(ms) + ")" : " (past)");
  }
  function status(s) {
    var r = $("readiness");
    r.textContent = s.ready ? "ready" : "not ready: waiting for " + s.pending.join("; ");
    r.className = s.ready ? "good" : "bad";
    $("draining").textContent = s.draining ? "draining: connections are given DRAIN_TIMEOUT to finish" : "";
    pairs("source", s.source);
    fill("certificates", s.certificates.map(function (c) {
      return row([c.identity, c.status, until(c.expiresAt), until(c.rotatesAt), c.error], [null, c.status === "available" ? "good" : "bad"]);
    }));
    pairs("capture", s.capture);
    var peers = s.pool.peers || {};
    fill("pool", Object.keys(peers).sort().map(function (p) { return row([p, peers[p].connections, peers[p].streams], [null, "n", "n"]); }));
    $("pool-total").textContent = s.pool.connections + " connection(s), " + s.pool.streams + " stream(s) in all";
  }
  function connections(c) {
    fill("connections", c.connections.map(function (x) {
      var tr = row([x.direction, x.state, side(x.src), x.src.identity, side(x.dst), x.dst.identity, x.dst.service, x.dst.hboneAddr, bytes(x.bytesSent), bytes(x.bytesRecv), age(x.ageMs)],
        [null, null, null, null, null, null, null, null, "n", "n", "n"]);
      tr.dataset.direction = x.direction;
      tr.dataset.state = x.state;
      tr.dataset.src = x.src.addr;
      tr.dataset.sent = String(x.bytesSent);
      tr.dataset.recv = String(x.bytesRecv);
      return tr;
    }));
    $("connections-count").textContent = c.count + " connection(s)" + (c.truncated ? " shown; more are open (see /debug/connections)" : "") +
      (c.unanswered.length ? "; workers " + c.unanswered.join(", ") + " did not answer" : "");
  }
  function get(path) {
    return fetch(path, { cache: "no-store" }).then(function (r) {
      if (!r.ok) return r.text().then(function (t) { throw new Error(path + ": HTTP " + r.status + " " + t); });
      return r.json();
    });
  }
  function poll() {
    Promise.all([get("/debug/status"), get("/debug/connections?limit=${PAGE_ROWS}")]).then(function (got) {
      status(got[0]);
      connections(got[1]);
      $("error").textContent = "";
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    }, function (e) {
      $("error").textContent = "cannot read the agent: " + e.message;
    }).then(function () { setTimeout(poll, 1000); });
  }
  function explain() {
    var q = new URLSearchParams({ src: $("x-src").value.trim(), dst: $("x-dst").value.trim() });
    var id = $("x-identity").value.trim();
    if (id) q.set("identity", id);
    fetch("/debug/explain?" + q, { cache: "no-store" }).then(function (r) {
      return r.ok ? r.json() : r.text().then(function (t) { throw new Error(t); });
    }).then(function (e) {
      var v = $("x-verdict");
      v.textContent = e.verdict.toUpperCase();
      v.className = e.verdict === "allow" ? "good" : "bad";
      $("x-summary").textContent = e.summary;
      var p = (e.inbound && e.inbound.policies) || [];
      fill("x-policies", p.map(function (x) {
        return row([x.policy, x.action, x.dryRun ? "yes" : "no", x.missing ? "not delivered: matches nothing" : x.rule >= 0 ? "rule " + x.rule : "no"]);
      }));
      fill("x-notes", e.notes.map(function (n) { return row([n]); }));
    }, function (err) {
      $("x-verdict").textContent = "";
      $("x-summary").textContent = err.message;
      fill("x-policies", []);
      fill("x-notes", []);
    });
  }
  $("x-go").addEventListener("click", explain);
  poll();
})();
`;

const hash = (s: string): string => `'sha256-${createHash("sha256").update(s).digest("base64")}'`;

/** Only this page's own script and style; fetches to its own origin; no frames, forms or plugins. */
export const ADMIN_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The page: `summary` rendered here (escaped), the rest filled in by the script. */
export function adminPage(summary: unknown, links: readonly (readonly [string, string])[]): string {
  const rows =
    summary !== null && typeof summary === "object"
      ? Object.entries(summary).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === "string" ? v : JSON.stringify(v))}</td></tr>`)
      : [`<tr><td>${esc(JSON.stringify(summary))}</td></tr>`];
  const table = (id: string, head: string[]): string => `<table id="${id}"><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody></tbody></table>`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>ztunnel admin</title>
<style>${STYLE}</style></head>
<body><h1>ztunnel admin</h1>
<table id="summary">${rows.join("")}</table>
<p id="error" class="bad"></p>
<section id="health"><h2>Health</h2>
<p>Readiness: <strong id="readiness" class="muted">…</strong> <span id="draining" class="bad"></span></p>
<h3>Discovery source</h3>${table("source", ["", ""])}
<h3>Certificates</h3>${table("certificates", ["identity", "status", "expires", "rotates", "error"])}
<h3>Capture rules</h3>${table("capture", ["", ""])}
<h3>HBONE pool</h3><p id="pool-total" class="muted"></p>${table("pool", ["peer", "connections", "streams"])}
</section>
<section id="live"><h2>Connections</h2><p id="connections-count" class="muted"></p>
${table("connections", ["direction", "state", "source", "source identity", "destination", "destination identity", "service", "HBONE peer", "sent", "received", "age"])}
</section>
<p id="updated" class="muted"></p>
<section id="explain"><h2>Explain a connection</h2>
<p>What this agent, and the destination's, would do with it; nothing is sent (<a href="/debug/explain">/debug/explain</a>).</p>
<p><label>source IP <input id="x-src" size="16"></label> <label>destination ip:port or hostname:port <input id="x-dst" size="32"></label>
<label>or as identity <input id="x-identity" size="40" placeholder="spiffe://…"></label> <button id="x-go" type="button">explain</button></p>
<p><strong id="x-verdict"></strong> <span id="x-summary"></span></p>
${table("x-policies", ["policy", "action", "dry run", "matched"])}
${table("x-notes", ["notes"])}
</section>
<h2>Pages</h2>
<ul>${links.map(([href, what]) => `<li><a href="${esc(href)}">${esc(href)}</a> — ${esc(what)}</li>`).join("")}</ul>
<script>${SCRIPT}</script>
</body></html>
`;
}

function esc(s: string | undefined): string {
  return (s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
