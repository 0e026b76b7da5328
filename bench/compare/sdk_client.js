// make bench-compare: an official SDK's side. N concurrent generations of one image at the
// SDK's documented defaults; prints one JSON line: wall and CPU seconds (process.cpuUsage,
// user+sys of this process), peak RSS (VmHWM), generations ok and failed, the first error.
//   fal        fal.subscribe() (queue submit, then status polls every 500 ms, then the result),
//              the image as a Blob, which the SDK uploads through fal storage first.
//   wavespeed  client.run() (submit, then a result poll every 1 s), the image inline as a
//              data: URI (lua-vidu's wavespeed route for an image under 10 MB).
//
//   node sdk_client.js fal|wavespeed BASE_URL N IMAGE_PATH API_KEY
"use strict";
const fs = require("fs");
const { falClient } = require("../../.ci/sdk-lib.js");

const [which, emu, nArg, imagePath, key] = process.argv.slice(2);
const n = Number(nArg);

function peakRssKb() {
  const m = /VmHWM:\s*(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) : 0;
}

function generator() {
  const bytes = fs.readFileSync(imagePath);
  if (which === "fal") {
    const fal = falClient(emu, key);
    return (i) => fal.subscribe("fal-ai/vidu/q1/image-to-video", {
      input: { prompt: "bench-compare " + i, image_url: new Blob([bytes], { type: "image/jpeg" }),
        seed: i },
    });
  }
  const { Client } = require("wavespeed");
  const client = new Client(key, { baseUrl: emu });
  const uri = "data:image/jpeg;base64," + bytes.toString("base64");
  return (i) => client.run("vidu/image-to-video-2.0", { image: uri, prompt: "bench-compare " + i,
    seed: i });
}

async function main() {
  const cpu0 = process.cpuUsage();
  const wall0 = process.hrtime.bigint();
  const one = generator();
  let ok = 0;
  let failed = 0;
  let error;
  const jobs = [];
  for (let i = 1; i <= n; i++) {
    jobs.push(one(i).then(() => { ok++; }, (e) => { failed++; error = error || String(e); }));
  }
  await Promise.all(jobs);
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ wall: Number(process.hrtime.bigint() - wall0) / 1e9,
    cpu: (cpu.user + cpu.system) / 1e6, rss_kb: peakRssKb(), ok, failed, error }));
}

main();
