// Times @iota/mam.js 1.0.0-beta.10 createMessage and parseMessage (used by benchmarks/mam_bench.py).
// stdin: {seed, mode, security, message, runs}; stdout: {create_s: [...], parse_s: [...], payloads: [...]}
"use strict";
const mam = require("@iota/mam.js");
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const q = JSON.parse(input);
  const state = mam.createChannel(q.seed, q.security, q.mode);
  const out = { create_s: [], parse_s: [], payloads: [] };
  for (let i = 0; i < q.runs; i++) {
    let t = process.hrtime.bigint();
    const m = mam.createMessage(state, q.message);
    out.create_s.push(Number(process.hrtime.bigint() - t) / 1e9);
    t = process.hrtime.bigint();
    mam.parseMessage(m.payload, m.root);
    out.parse_s.push(Number(process.hrtime.bigint() - t) / 1e9);
    out.payloads.push(m.payload);
  }
  process.stdout.write(JSON.stringify(out));
});
