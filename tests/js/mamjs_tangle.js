// Drives @iota/mam.js 1.0.0-beta.10 over a running legacy node (mamAttach, mamFetch, mamFetchAll).
// stdin: {"provider": url, "ops": [...]}; stdout: {"results": [...]}, one per op, in order.
//   {"op": "publish", "channel": {seed, mode, sideKey, security}, "messages": [trytes...], "depth", "mwm", "tag"}
//      -> {"published": [{root, address, nextRoot, bundle, hashes}], "state"}  (createChannel + createMessage +
//         mamAttach for each message, in order)
//   {"op": "fetch", "root", "mode", "sideKey"} -> {"ok": true, "message": {root, nextRoot, message, tag} | null}
//                                               | {"ok": false, "error"}
//   {"op": "fetchAll", "root", "mode", "sideKey", "limit"} -> {"ok": true, "messages": [...]} | {"ok": false, ...}
"use strict";
const { composeAPI } = require("@iota/core");
const mam = require("@iota/mam.js");

async function run(api, op) {
  if (op.op === "publish") {
    const c = op.channel;
    const state = op.state || mam.createChannel(c.seed, c.security, c.mode, c.sideKey || undefined);
    const published = [];
    for (const m of op.messages) {
      const msg = mam.createMessage(state, m);
      const txs = await mam.mamAttach(api, msg, op.depth, op.mwm, op.tag || undefined);
      published.push({
        root: msg.root,
        address: msg.address,
        nextRoot: state.nextRoot,
        bundle: txs[0].bundle,
        hashes: txs.map((t) => t.hash),
      });
    }
    return { published, state };
  }
  const sideKey = op.sideKey || undefined;
  try {
    if (op.op === "fetch") {
      const m = await mam.mamFetch(api, op.root, op.mode, sideKey);
      return { ok: true, message: m || null };
    }
    if (op.op === "fetchAll") {
      return { ok: true, messages: await mam.mamFetchAll(api, op.root, op.mode, sideKey, op.limit) };
    }
  } catch (e) {
    return { ok: false, error: String((e && e.message) || e) };
  }
  throw new Error("unknown op " + op.op);
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", async () => {
  try {
    const req = JSON.parse(input);
    const api = composeAPI({ provider: req.provider });
    const results = [];
    for (const op of req.ops) results.push(await run(api, op));
    process.stdout.write(JSON.stringify({ results }));
  } catch (e) {
    process.stderr.write(String((e && e.stack) || e));
    process.exit(1);
  }
});
