// make bench-compare: lua-vidu against the official fal and WaveSpeed JS SDKs, the same work,
// one emulator (time-based progress, no ffmpeg), one client process at a time. It prints
// figures and asserts nothing. Settings from the environment (the Makefile passes them):
//   N          concurrent generations per client (default 200)
//   IMAGE      the image every generation sends (the Makefile makes a 1080p JPEG with ffmpeg)
//   DURATIONS  "fixed" (default), "lognormal" or "both"
//   SECONDS    the fixed duration (default 10)
//   MEDIAN, SIGMA, SEED   the lognormal durations (default 30 s, 0.5, 1): one duration per
//              task, drawn from a seeded generator, handed to the emulator through
//              POST /_emulator/next, so every client gets the same list of durations
//   CLIENTS    which to run (default "lua-fal sdk-fal lua-wavespeed sdk-wavespeed")
// Per client: wall and CPU seconds (user+sys) and peak RSS (VmHWM) as its own process reports
// them; requests per generation from the emulator's log (reset before each client); and
// finish->known: for each task, from the moment it was due on the emulator to the first request
// about it that arrived at or after that moment (the one whose answer told the client), both
// on the emulator's clock.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");
const { ROOT, startEmulator, version } = require("../../.ci/sdk-lib.js");

const N = Number(process.env.N || 200);
const IMAGE = process.env.IMAGE || path.join(ROOT, "build/photo.jpg");
const DURATIONS = process.env.DURATIONS || "fixed";
const SECONDS = Number(process.env.SECONDS || 10);
const MEDIAN = Number(process.env.MEDIAN || 30);
const SIGMA = Number(process.env.SIGMA || 0.5);
const SEED = Number(process.env.SEED || 1);
const CLIENTS = (process.env.CLIENTS || "lua-fal sdk-fal lua-wavespeed sdk-wavespeed").split(/\s+/)
  .filter(Boolean);
const LUA = process.env.VIDU_LUA || "lua5.4";

// A seeded generator (mulberry32) -> floats in [0, 1).
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// n durations from a lognormal with this median and sigma (Box-Muller).
function lognormal(n, median, sigma, seed) {
  const rand = seeded(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    out.push(median * Math.exp(sigma * z));
  }
  return out;
}

async function control(emu, method, p, body) {
  const r = await fetch(emu + "/_emulator/" + p, { method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined });
  if (!r.ok) throw new Error(`control ${method} ${p}: HTTP ${r.status}: ${await r.text()}`);
  return r.json();
}

// Runs one client process -> the JSON line it printed last.
function runClient(name, emu) {
  const [kind, provider] = name.split("-");
  const key = "bench-" + name + ":secret";
  const cmd = kind === "lua" ? LUA : process.execPath;
  const script = path.join(__dirname, kind === "lua" ? "lua_client.lua" : "sdk_client.js");
  const child = spawn(cmd, [script, provider, emu, String(N), IMAGE, key],
    { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => { out += d; });
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => {
      const line = out.trim().split("\n").pop();
      try { resolve(JSON.parse(line)); } catch (e) {
        reject(new Error(`${name} exited with ${code} and printed: ${out.slice(-500)}`));
      }
    });
  });
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)] : NaN;
}

async function measure(emu, name, durations) {
  await control(emu, "POST", "reset", { progress: "time", seconds: SECONDS,
    log_limit: N * 400 + 1000, log_body_limit: 0 });
  for (const s of durations || []) await control(emu, "POST", "next", { seconds: s });
  const r = await runClient(name, emu);
  const log = (await control(emu, "GET", "log")).requests;
  const tasks = (await control(emu, "GET", "tasks?input=0")).tasks;
  const due = new Map();
  for (const t of tasks) if (t.due_at) due.set(String(t.id), t.due_at);
  const known = new Map();
  for (const e of log) {
    for (const seg of e.path.split("/")) {
      const d = due.get(seg);
      if (d !== undefined && e.time >= d && !(known.get(seg) <= e.time)) known.set(seg, e.time);
    }
  }
  const delays = [...known].map(([id, t]) => t - due.get(id)).sort((a, b) => a - b);
  return Object.assign(r, { requests: log.length / N, tasks: tasks.length, known: delays.length,
    median: pct(delays, 0.5), p90: pct(delays, 0.9) });
}

const LABEL = { "lua-fal": "lua-vidu fal", "lua-wavespeed": "lua-vidu wavespeed",
  "sdk-fal": "@fal-ai/client " + version("@fal-ai/client"),
  "sdk-wavespeed": "wavespeed " + version("wavespeed") };
const ROWS = [
  ["generations ok", (r) => `${r.ok}/${N}`],
  ["wall s", (r) => r.wall.toFixed(1)],
  ["client CPU s", (r) => r.cpu.toFixed(2)],
  ["peak RSS MB", (r) => (r.rss_kb / 1024).toFixed(1)],
  ["requests/gen", (r) => r.requests.toFixed(2)],
  ["finish->known median s", (r) => r.median.toFixed(3)],
  ["finish->known p90 s", (r) => r.p90.toFixed(3)],
];
const RATIOS = [["client CPU", "cpu"], ["peak RSS", "rss_kb"], ["requests/gen", "requests"],
  ["finish->known median", "median"], ["finish->known p90", "p90"]];

function print(title, results) {
  const names = CLIENTS.filter((c) => results[c]);
  const w = 24;
  console.log("\n" + title);
  console.log("".padEnd(w) + names.map((c) => LABEL[c].padStart(22)).join(""));
  for (const [label, f] of ROWS) {
    console.log(label.padEnd(w) + names.map((c) => f(results[c]).padStart(22)).join(""));
  }
  for (const p of ["fal", "wavespeed"]) {
    const a = results["lua-" + p];
    const b = results["sdk-" + p];
    if (!a || !b) continue;
    console.log(`lua/SDK ${p}: ` + RATIOS.map(([l, k]) => `${l} ${(a[k] / b[k]).toFixed(2)}`)
      .join(", "));
  }
  for (const c of names) {
    if (results[c].error) console.log(`${LABEL[c]}: first error: ${results[c].error}`);
  }
}

async function main() {
  const size = fs.statSync(IMAGE).size;
  const { url, child } = await startEmulator(["--no-ffmpeg"]);
  console.log(`bench-compare: ${N} concurrent generations per client, image ${path.basename(IMAGE)}` +
    ` (${Math.round(size / 1024)} KB), emulator at ${url}, clients one after another,` +
    ` load average ${require("os").loadavg()[0].toFixed(2)} on ${require("os").cpus().length} cores`);
  const modes = DURATIONS === "both" ? ["fixed", "lognormal"] : [DURATIONS];
  for (const mode of modes) {
    const durations = mode === "lognormal" ? lognormal(N, MEDIAN, SIGMA, SEED) : null;
    const results = {};
    for (const c of CLIENTS) {
      const t0 = Date.now();
      results[c] = await measure(url, c, durations);
      console.log(`bench-compare: ${mode}: ${LABEL[c]} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    console.log(`bench-compare: load average now ${require("os").loadavg()[0].toFixed(2)}`);
    print(mode === "fixed" ? `durations fixed, ${SECONDS} s each` :
      `durations lognormal, median ${MEDIAN} s, sigma ${SIGMA}, seed ${SEED} (longest ` +
      `${Math.max(...durations).toFixed(1)} s)`, results);
  }
  child.removeAllListeners("exit");
  child.kill("SIGTERM");
}

main().catch((e) => {
  console.log("bench-compare: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
