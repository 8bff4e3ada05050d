// Drives @iota/core 1.0.0-beta.30 (composeAPI) against a running IRI-compatible node, for SCB's node tests.
// stdin: {"provider": "http://127.0.0.1:PORT", "ops": [{"method": "<API method>", "args": [...]}, ...]}
// Ops run in order; an argument {"$result": k} is replaced by the result of op k (e.g. prepareTransfers ->
// sendTrytes). stdout: {"results": [{"ok": true, "value": ...} | {"ok": false, "error": "..."}]}
"use strict";
const { composeAPI } = require("@iota/core");

async function main(req) {
  const api = composeAPI({ provider: req.provider });
  const results = [];
  for (const op of req.ops) {
    const args = (op.args || []).map((a) =>
      a && typeof a === "object" && !Array.isArray(a) && "$result" in a ? results[a.$result].value : a
    );
    try {
      if (typeof api[op.method] !== "function") throw new Error("no such API method " + op.method);
      const value = await api[op.method](...args);
      results.push({ ok: true, value });
    } catch (e) {
      results.push({ ok: false, error: String((e && e.message) || e) });
    }
  }
  return { results };
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  main(JSON.parse(input)).then(
    (out) => process.stdout.write(JSON.stringify(out)),
    (e) => {
      process.stderr.write(String((e && e.stack) || e));
      process.exit(1);
    }
  );
});
