// Drive @openzeppelin/merkle-tree (the reference) for tests/settlement/test_merkle.py and tests/contracts.
// JSON on stdin:
//   { "trees":  [ { "values": [[...], ...], "encoding": ["bytes32"], "multi": [[valueIndex, ...], ...] } ],
//     "verify": [ { "root": "0x..", "value": [...], "proof": ["0x..", ...], "encoding": ["bytes32"] } ],
//     "verifyMulti": [ { "root": "0x..", "leaves": [[...]], "proof": [...], "proofFlags": [...], "encoding": [...] } ],
//     "load": [ <standard-v1 dump> ] }
// JSON on stdout:
//   { "trees": [ { "root", "dump", "proofs": [proof of value i], "multi": [ {leaves, proof, proofFlags} ] } ],
//     "verify": [bool], "verifyMulti": [bool], "load": [ {"ok": bool, "root"?: .., "error"?: ..} ] }
'use strict';

const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');

function readStdin() {
  return require('fs').readFileSync(0, 'utf8');
}

function safe(fn) {
  try {
    return fn();
  } catch (err) {
    return false;
  }
}

const input = JSON.parse(readStdin());
const out = { trees: [], verify: [], verifyMulti: [], load: [] };

for (const t of input.trees || []) {
  const tree = StandardMerkleTree.of(t.values, t.encoding);
  const proofs = t.values.map((_, i) => tree.getProof(i));
  const multi = (t.multi || []).map((indices) => tree.getMultiProof(indices));
  out.trees.push({ root: tree.root, dump: tree.dump(), proofs, multi });
}
for (const v of input.verify || []) {
  out.verify.push(safe(() => StandardMerkleTree.verify(v.root, v.encoding, v.value, v.proof)));
}
for (const v of input.verifyMulti || []) {
  out.verifyMulti.push(
    safe(() =>
      StandardMerkleTree.verifyMultiProof(v.root, v.encoding, {
        leaves: v.leaves,
        proof: v.proof,
        proofFlags: v.proofFlags,
      }),
    ),
  );
}
for (const d of input.load || []) {
  try {
    out.load.push({ ok: true, root: StandardMerkleTree.load(d).root });
  } catch (err) {
    out.load.push({ ok: false, error: String(err.message || err) });
  }
}

process.stdout.write(JSON.stringify(out));
