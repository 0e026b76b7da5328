// What `make sdk-check` (.ci/sdk-check.js) and `make bench-compare` (bench/compare/) share:
// starting the emulator, pointing the official fal SDK at it, and the installed SDK versions.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..");

// Starts bin/vidu-emulator on a free loopback port with extra `args` -> { url, child }.
function startEmulator(args) {
  const lua = process.env.VIDU_LUA || "lua5.4";
  const child = spawn(lua, [path.join(ROOT, "bin/vidu-emulator"), "--port", "0",
    "--exit-with-parent"].concat(args || []), { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("the emulator did not start in 20 s")), 20000);
    child.on("exit", (code) => reject(new Error("the emulator exited with " + code)));
    child.stdout.on("data", (d) => {
      buf += d;
      const line = buf.split("\n")[0];
      if (buf.includes("\n") && line.startsWith("http://")) {
        clearTimeout(timer);
        resolve({ url: line.trim(), child });
      }
    });
  });
}

// The fal SDK's client with its hosts pointed at `emu`. The SDK has no base-URL option: its
// hosts (queue.fal.run, fal.run, rest.fal.ai) are fixed in request.js/config.js;
// requestMiddleware, the SDK's documented hook that may rewrite each request's URL, does it.
function falClient(emu, credentials) {
  const { createFalClient } = require("@fal-ai/client");
  const hosts = /^https:\/\/(queue\.fal\.run|fal\.run|rest\.fal\.ai)/;
  return createFalClient({
    credentials,
    requestMiddleware: async (req) => Object.assign({}, req, { url: req.url.replace(hosts, emu) }),
  });
}

// The installed version of package `name` (its package.json under NODE_PATH), or "?".
function version(name) {
  for (const dir of (process.env.NODE_PATH || "").split(path.delimiter).filter(Boolean)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, name, "package.json"), "utf8")).version;
    } catch (e) { /* not in this folder */ }
  }
  return "?";
}

module.exports = { ROOT, startEmulator, falClient, version };
