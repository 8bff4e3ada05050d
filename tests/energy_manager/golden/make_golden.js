// Generates readings-valid.json and readings-invalid.json: canonical reading bytes written out by hand (not by
// SCB's encoder) and their keccak256 from js-sha3, an implementation independent of SCB's (eth-hash).
// Run from the repository root: node tests/energy_manager/golden/make_golden.js
"use strict";
const fs = require("fs");
const path = require("path");
const { keccak256 } = require("js-sha3");

const hex = (s) => "0x" + keccak256(Buffer.from(s, "utf8"));
const SALT = "00112233445566778899aabbccddeeff";

// A canonical reading: keys inserted in sorted order, JSON.stringify (compact), so key order is explicit here.
function canon(f) {
  const keys = ["circuit", "hub", "meter", "party", "power_w", "register_wh", "salt", "schema", "seq", "ts_ms"];
  const o = {};
  for (const k of keys) o[k] = f[k];
  return JSON.stringify(o);
}
const base = {
  circuit: "consumption", hub: "scb-demo-hub", meter: "h1", party: "h1", power_w: 420,
  register_wh: 12345, salt: SALT, schema: 1, seq: 17, ts_ms: 1750464000123,
};

const valid = [
  { name: "household consumption", fields: base },
  { name: "generation at night, first reading, zero register",
    fields: { ...base, circuit: "generation", meter: "pv", party: "system", power_w: 0, register_wh: 0, seq: 1,
              salt: "ffffffffffffffffffffffffffffffff", ts_ms: 946684800000 } },
  { name: "limits: longest ids, largest integers, negative power, last millisecond of 2099",
    fields: { circuit: "grid_export", hub: "H".repeat(32) + "_.-" + "9".repeat(29), meter: "grid-export.1",
              party: "grid", power_w: -2147483647, register_wh: 9007199254740991, salt: "0123456789abcdef0123456789abcdef",
              schema: 1, seq: 9007199254740991, ts_ms: 4102444799999 } },
  { name: "grid import", fields: { ...base, circuit: "grid_import", meter: "grid-import", party: "grid",
                                   power_w: 1948, register_wh: 3996009, seq: 400 } },
].map((c) => {
  const canonical = canon(c.fields);
  return { name: c.name, canonical, digest: hex(canonical), fields: c.fields };
});

const good = canon(base);
const invalid = [
  ["keys not sorted", JSON.stringify({ hub: base.hub, circuit: base.circuit, meter: "h1", party: "h1", power_w: 420,
    register_wh: 12345, salt: SALT, schema: 1, seq: 17, ts_ms: base.ts_ms }), "canonical form"],
  ["whitespace after a colon", good.replace('"meter":"h1"', '"meter": "h1"'), "canonical form"],
  ["trailing newline", good + "\n", "canonical form"],
  ["escaped character in a string", good.replace('"meter":"h1"', '"meter":"\\u00681"'), "canonical form"],
  ["negative zero", good.replace('"power_w":420', '"power_w":-0'), "canonical form"],
  ["float register", good.replace('"register_wh":12345', '"register_wh":12345.0'), "integers"],
  ["exponent", good.replace('"register_wh":12345', '"register_wh":1e3'), "integers"],
  ["NaN power", good.replace('"power_w":420', '"power_w":NaN'), "not a valid reading value"],
  ["negative register", good.replace('"register_wh":12345', '"register_wh":-1'), "register_wh"],
  ["register beyond 2**53-1", good.replace('"register_wh":12345', '"register_wh":9007199254740992'), "register_wh"],
  ["boolean power", good.replace('"power_w":420', '"power_w":true'), "power_w"],
  ["string sequence number", good.replace('"seq":17', '"seq":"17"'), "seq"],
  ["sequence number zero", good.replace('"seq":17', '"seq":0'), "seq"],
  ["uppercase salt", good.replace(SALT, SALT.toUpperCase()), "salt"],
  ["short salt", good.replace(SALT, SALT.slice(2)), "salt"],
  ["missing salt", canon({ ...base, salt: undefined }).replace(',"salt":undefined', ""), "missing salt"],
  ["extra field", good.replace('"meter":"h1"', '"meter":"h1","note":"x"'), "unexpected note"],
  ["schema 2", good.replace('"schema":1', '"schema":2'), "schema"],
  ["unknown circuit", good.replace('"circuit":"consumption"', '"circuit":"battery"'), "circuit"],
  ["hub with a space", good.replace('"hub":"scb-demo-hub"', '"hub":"scb demo hub"'), "hub"],
  ["meter id starting with a dash", good.replace('"meter":"h1"', '"meter":"-h1"'), "meter"],
  ["timestamp in 1970 (a Pi without clock)", good.replace('"ts_ms":1750464000123', '"ts_ms":123'), "ts_ms"],
  ["timestamp in seconds, not milliseconds", good.replace('"ts_ms":1750464000123', '"ts_ms":1750464000'), "ts_ms"],
  ["duplicate key", good.replace('"seq":17', '"seq":17,"seq":18'), "duplicate key"],
  ["non-ASCII character", good.replace('"meter":"h1"', '"meter":"h\u00e9"'), "ASCII"],
  ["truncated", good.slice(0, good.length - 5), "not valid JSON"],
  ["array, not object", "[" + good + "]", "JSON object"],
  ["empty", "", "not valid JSON"],
].map(([name, canonical, error]) => ({ name, canonical, digest: hex(canonical), error }));
// valid bytes, wrong digest: the last hex digit changed
const d = hex(good);
invalid.push({ name: "digest of other bytes", canonical: good,
               digest: d.slice(0, -1) + (d.endsWith("0") ? "1" : "0"), error: "digest mismatch" });
invalid.push({ name: "digest of the reading with another salt", canonical: good,
               digest: hex(good.replace(SALT, "ffeeddccbbaa99887766554433221100")), error: "digest mismatch" });

const dir = __dirname;
fs.writeFileSync(path.join(dir, "readings-valid.json"), JSON.stringify(valid, null, 1) + "\n");
fs.writeFileSync(path.join(dir, "readings-invalid.json"), JSON.stringify(invalid, null, 1) + "\n");
console.log(`${valid.length} valid, ${invalid.length} invalid`);
