// Install step: compile the addon from source with node-gyp against the headers of the
// Node that runs this script. Never downloads headers. A failed build is reported and
// does not fail the install: the agent then runs without capture and says why.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const warn = (msg) => process.stderr.write(`@zt/sockopt: ${msg}\n`);

function nodeDir() {
  const candidates = [process.env.npm_config_nodedir, path.dirname(path.dirname(process.execPath)), process.config.variables.node_prefix, "/usr", "/usr/local"];
  return candidates.find((d) => d && existsSync(path.join(d, "include", "node", "common.gypi")));
}

const dir = nodeDir();
if (!dir) {
  warn("no Node headers found next to this Node (include/node/common.gypi); addon not built, capture will be unavailable");
  process.exit(0);
}
let gyp;
try {
  gyp = createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
} catch {
  // A production install (pnpm deploy --prod) carries the addon built earlier and no node-gyp.
  if (existsSync(path.join(here, "build", "Release", "sockopt.node"))) process.exit(0);
  warn("node-gyp is not installed; addon not built, capture will be unavailable");
  process.exit(0);
}
const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${dir}`, "--loglevel=warn"], { cwd: here, stdio: ["ignore", "inherit", "inherit"] });
if (r.status !== 0) {
  warn(`node-gyp rebuild failed (exit ${r.status ?? r.signal}); addon not built, capture will be unavailable`);
}
process.exit(0);
