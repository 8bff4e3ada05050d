// Drives @iota/mam.js 1.0.0-beta.10 (the reference) for SCB's interop tests.
// stdin: {"ops": [...]}; stdout: {"results": [...]} one result per op, in order.
//   {"op": "create", "state": <mam.js channel state or null>, "channel": {seed, mode, sideKey, security},
//    "messages": [trytes...]}  -> {"created": [{payload, root, address, nextRoot}], "state": <state after>}
//   {"op": "parse", "payload", "root", "sideKey"}  -> {"ok": true, message, nextRoot} | {"ok": false, error, type}
"use strict";
const mam = require("@iota/mam.js");

function run(op) {
  if (op.op === "create") {
    let state = op.state;
    if (!state) {
      const c = op.channel;
      state = mam.createChannel(c.seed, c.security, c.mode, c.sideKey || undefined);
    }
    const created = op.messages.map((m) => {
      const r = mam.createMessage(state, m);
      return { payload: r.payload, root: r.root, address: r.address, nextRoot: state.nextRoot };
    });
    return { created, state };
  }
  if (op.op === "parse") {
    try {
      const r = mam.parseMessage(op.payload, op.root, op.sideKey || undefined);
      return { ok: true, message: r.message, nextRoot: r.nextRoot };
    } catch (e) {
      return { ok: false, error: String(e.message), type: e.constructor.name };
    }
  }
  if (op.op === "root") {
    return { root: mam.channelRoot(op.state) };
  }
  throw new Error("unknown op " + op.op);
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  process.stdout.write(JSON.stringify({ results: req.ops.map(run) }));
});
