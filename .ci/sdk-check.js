// make sdk-check: the official fal and WaveSpeed JavaScript SDKs complete one generation each
// against the offline emulator, through their documented calls:
//   fal        createFalClient({ credentials, requestMiddleware }) then fal.subscribe(), with the
//              image as a Blob (so the SDK uploads it through fal storage first); sdk-lib.js
//              points the SDK's fixed hosts at the emulator through requestMiddleware.
//   WaveSpeed  new Client(key, { baseUrl }) then client.upload(path) and client.run().
// Each downloads the video it was given and checks it is an MP4. Prints one line per SDK and
// "N passed, N failed"; exits non-zero on any failure. The SDKs come from build/sdk (NODE_PATH).
"use strict";
const fs = require("fs");
const path = require("path");
const { ROOT, startEmulator, falClient, version } = require("./sdk-lib.js");

const IMAGE = path.join(ROOT, "spec/fixtures/png_640x360.png");
const PROMPT = "The astronaut waved and the camera moved up.";

// Downloads `url` and checks it is an MP4 (an ISO BMFF 'ftyp' box first) -> its size.
async function checkVideo(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error("video download: HTTP " + r.status);
  const bytes = Buffer.from(await r.arrayBuffer());
  if (bytes.length < 100 || bytes.toString("latin1", 4, 8) !== "ftyp") {
    throw new Error("the video is not an MP4 (" + bytes.length + " bytes)");
  }
  return bytes.length;
}

async function checkFal(emu) {
  const fal = falClient(emu, "sdk-check-id:sdk-check-secret");
  const statuses = [];
  const image = new Blob([fs.readFileSync(IMAGE)], { type: "image/png" });
  const result = await fal.subscribe("fal-ai/vidu/q1/image-to-video", {
    input: { prompt: PROMPT, image_url: image, movement_amplitude: "small" },
    logs: true,
    pollInterval: 100,
    onQueueUpdate: (u) => statuses.push(u.status),
  });
  const url = result.data && result.data.video && result.data.video.url;
  if (!url) throw new Error("no video.url in the result: " + JSON.stringify(result.data));
  if (!url.startsWith(emu)) throw new Error("the video is not the emulator's: " + url);
  const size = await checkVideo(url);
  const seen = [...new Set(statuses)].join(" > ");
  return `request ${result.requestId}, statuses ${seen}, video ${size} bytes`;
}

async function checkWaveSpeed(emu) {
  const { Client } = require("wavespeed");
  const client = new Client("sdk-check-key", { baseUrl: emu, timeout: 60 });
  const image = await client.upload(IMAGE);
  if (!image.startsWith(emu)) throw new Error("the upload is not the emulator's: " + image);
  const out = await client.run("vidu/image-to-video-2.0", { image, prompt: PROMPT, duration: 4 },
    { timeout: 60, pollInterval: 0.1 });
  const url = out.outputs && out.outputs[0];
  if (!url) throw new Error("no outputs: " + JSON.stringify(out));
  const size = await checkVideo(url);
  return `uploaded ${path.basename(image)}, video ${size} bytes`;
}

async function main() {
  const { url, child } = await startEmulator(["--polls", "3"]);
  console.log("sdk-check: emulator at " + url);
  const checks = [
    ["fal (@fal-ai/client " + version("@fal-ai/client") + ")", checkFal],
    ["wavespeed (wavespeed " + version("wavespeed") + ")", checkWaveSpeed],
  ];
  let passed = 0;
  let failed = 0;
  for (const [name, fn] of checks) {
    try {
      console.log(`sdk-check: ${name}: ok: ${await fn(url)}`);
      passed++;
    } catch (e) {
      console.log(`sdk-check: ${name}: FAILED: ${e && e.stack ? e.stack : e}`);
      failed++;
    }
  }
  child.removeAllListeners("exit");
  child.kill("SIGTERM");
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((e) => {
  console.log("sdk-check: " + (e && e.stack ? e.stack : e));
  console.log("0 passed, 1 failed");
  process.exit(1);
});
