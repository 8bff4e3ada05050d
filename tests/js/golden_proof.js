// Checks SCB proof files (tests/settlement/data/*.json) with the JS references only, none of SCB's code:
// @openzeppelin/merkle-tree for the leaf and the Merkle path, @iota/mam.js for the MAM payload, and raw JSON-RPC
// (Node's fetch, hand-encoded calls) for what the chain holds. Driven by tests/settlement/test_golden_js.py.
//
// stdin:  {"rpc": "http://127.0.0.1:PORT", "sideKey": "<trytes>", "files": [{"name": .., "proof": {...}}, ...]}
// stdout: {"results": [{"name", "ok", "checks": [{"check", "ok", "detail"}]}]}
//
// Every check runs on every file (no short-circuit), so a test can say exactly which checks a tampered file fails:
//   digest           keccak256(reading.canonical) == reading.digest
//   leaf             the StandardMerkleTree leaf hash of [digest] (bytes32) == merkle.leaf
//   chain id         eth_chainId == chain.chain_id
//   root             periodInfo(system_id, period_id).readingsRoot on chain.contract == merkle.root
//   merkle path      StandardMerkleTree.verify(<on-chain root>, ["bytes32"], [digest], merkle.proof)
//   transaction      chain.tx_hash succeeded and emitted PeriodSettled(system_id, period_id) from chain.contract
//   MAM root on chain keccak256(mam.period_mam_root) == periodInfo(..).mamRootHash
//   MAM address      decodeAddress(mam.root, mam.mode) == mam.address
//   MAM signature    parseMessage(mam.payload, mam.root, sideKey) accepts the payload
//   MAM reading      the message it yields is an scb.readings message carrying reading.canonical exactly
"use strict";

const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const mam = require("@iota/mam.js");
const { trytesToAscii } = require("@iota/converter");
// the keccak256 @openzeppelin/merkle-tree itself hashes with (its dependency, pinned by package-lock.json)
const { keccak256 } = require("ethereum-cryptography/keccak");
const { utf8ToBytes, bytesToHex } = require("ethereum-cryptography/utils");

const PERIOD_SETTLED = "PeriodSettled(uint256,uint256,uint256,uint256,bytes32,string,uint256,uint256,uint256)";

function keccakHex(text) {
  return "0x" + bytesToHex(keccak256(utf8ToBytes(text)));
}

function word(n) {
  return BigInt(n).toString(16).padStart(64, "0");
}

async function rpc(url, method, params) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const body = await response.json();
  if (body.error) {
    throw new Error(`${method}: ${body.error.message || JSON.stringify(body.error)}`);
  }
  return body.result;
}

// periodInfo(uint256,uint256) returns a PeriodView of eight static words; the first two are the roots
async function periodInfo(url, contract, systemId, periodId) {
  const selector = keccakHex("periodInfo(uint256,uint256)").slice(0, 10);
  const data = selector + word(systemId) + word(periodId);
  const out = await rpc(url, "eth_call", [{ to: contract, data }, "latest"]);
  const hex = out.slice(2);
  if (hex.length < 8 * 64) {
    throw new Error(`periodInfo returned ${hex.length / 2} bytes`);
  }
  return { readingsRoot: "0x" + hex.slice(0, 64), mamRootHash: "0x" + hex.slice(64, 128) };
}

// A check that throws is a failed check whose detail is the error.
async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    return { ok: false, detail: String((err && err.message) || err) };
  }
}

async function checkFile(proof, url, sideKey) {
  const checks = [];
  const add = async (name, fn) => checks.push({ check: name, ...(await attempt(fn)) });
  const reading = proof.reading || {};
  const merkle = proof.merkle || {};
  const chain = proof.chain || {};
  const m = proof.mam || {};
  const digest = String(reading.digest).toLowerCase();
  const encoding = merkle.leaf_encoding;
  let onchain = null;
  let onchainError = "not read";
  try {
    onchain = await periodInfo(url, chain.contract, chain.system_id, chain.period_id);
  } catch (err) {
    onchainError = String(err.message || err);
  }

  await add("digest", () => {
    const actual = keccakHex(reading.canonical);
    return { ok: actual === digest, detail: `keccak256(canonical) = ${actual}` };
  });
  await add("leaf", () => {
    const leaf = StandardMerkleTree.of([[digest]], encoding).leafHash([digest]);
    return { ok: leaf === String(merkle.leaf).toLowerCase(), detail: `leaf hash of the digest = ${leaf}` };
  });
  await add("chain id", async () => {
    const id = Number(BigInt(await rpc(url, "eth_chainId", [])));
    return { ok: id === chain.chain_id, detail: `the RPC endpoint serves chain ${id}` };
  });
  await add("root", () => {
    if (!onchain) return { ok: false, detail: onchainError };
    return { ok: onchain.readingsRoot === String(merkle.root).toLowerCase(), detail: `on chain: ${onchain.readingsRoot}` };
  });
  await add("merkle path", () => {
    if (!onchain) return { ok: false, detail: onchainError };
    const ok = StandardMerkleTree.verify(onchain.readingsRoot, encoding, [digest], merkle.proof);
    return { ok, detail: `against the on-chain root ${onchain.readingsRoot}` };
  });
  await add("transaction", async () => {
    const receipt = await rpc(url, "eth_getTransactionReceipt", [chain.tx_hash]);
    if (!receipt) return { ok: false, detail: `no transaction ${chain.tx_hash}` };
    const topic = keccakHex(PERIOD_SETTLED);
    const settled = receipt.logs.filter(
      (l) => l.address.toLowerCase() === String(chain.contract).toLowerCase() && l.topics[0] === topic,
    );
    const periods = settled.filter((l) => BigInt(l.topics[1]) === BigInt(chain.system_id)).map((l) => BigInt(l.topics[2]));
    const ok = receipt.status === "0x1" && periods.length === 1 && periods[0] === BigInt(chain.period_id);
    return { ok, detail: `status ${receipt.status}, settled periods [${periods.join(", ")}]` };
  });
  await add("MAM root on chain", () => {
    if (!onchain) return { ok: false, detail: onchainError };
    const hash = keccakHex(m.period_mam_root);
    return { ok: hash === onchain.mamRootHash, detail: `keccak256(period_mam_root) = ${hash}` };
  });
  await add("MAM address", () => {
    const address = mam.decodeAddress(m.root, m.mode);
    return { ok: address === m.address, detail: `the root's address is ${address}` };
  });
  let parsed = null;
  await add("MAM signature", () => {
    parsed = mam.parseMessage(m.payload, m.root, m.mode === "restricted" ? sideKey : undefined);
    return { ok: true, detail: `next root ${parsed.nextRoot}` };
  });
  await add("MAM reading", () => {
    if (!parsed) return { ok: false, detail: "no message: the payload did not parse" };
    const body = JSON.parse(trytesToAscii(parsed.message));
    // The canonical form is compact JSON with sorted keys; a flat object of strings and integers re-encodes to
    // exactly those bytes with the keys listed in sorted order.
    const carried = (body.readings || []).map((r) => JSON.stringify(r, Object.keys(r).sort()));
    const ok = body.type === "scb.readings" && carried.includes(reading.canonical);
    return { ok, detail: `${body.type} message with ${carried.length} readings` };
  });
  return { ok: checks.every((c) => c.ok), checks };
}

async function main() {
  const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const results = [];
  for (const f of input.files) {
    results.push({ name: f.name, ...(await checkFile(f.proof, input.rpc, input.sideKey)) });
  }
  process.stdout.write(JSON.stringify({ results }));
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exit(1);
});
