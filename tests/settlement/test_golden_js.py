"""The golden proof files checked by the JS references alone (tests/js/golden_proof.js), not by SCB's code.

`scb verify --proof` and the golden files are both SCB's; here `@openzeppelin/merkle-tree` checks the leaf and the
Merkle path against the root the contract holds (read by hand-encoded JSON-RPC, not web3.py), and `@iota/mam.js`
parses the MAM payload with the channel's root and side key and must yield a message carrying the reading. Valid
files pass every check; each invalid file fails exactly the checks its tampering breaks.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import run_node
from tests.settlement import golden
from tests.settlement.conftest import start_anvil

CHECKS = ["digest", "leaf", "chain id", "root", "merkle path", "transaction", "MAM root on chain", "MAM address",
          "MAM signature", "MAM reading"]

#: file -> the checks that must fail (every other check must pass)
EXPECTED_FAILURES: dict[str, set[str]] = {
    "valid.json": set(),
    "valid-period2.json": set(),
    # canonical edited, digest kept: the bytes no longer hash to it, and the signed message has the original
    "tampered-reading.json": {"digest", "MAM reading"},
    # the file claims period 2's root for a period-1 reading
    "wrong-root.json": {"root"},
    # a period-1 proof presented as period 2: another root, another transaction's period, another MAM root
    "other-period.json": {"root", "merkle path", "transaction", "MAM root on chain"},
    "other-chain.json": {"chain id"},
    # a forged reading with its digest and leaf recomputed: consistent in itself, but not anchored nor signed
    "tampered-leaf.json": {"merkle path", "MAM reading"},
    "tampered-path.json": {"merkle path"},
    "tampered-payload.json": {"MAM signature", "MAM reading"},
}


@pytest.fixture(scope="module")
def rpc_url() -> Iterator[str]:
    """A fresh anvil holding the golden history (the committed files' contract, transactions and roots)."""
    node = start_anvil()
    try:
        golden.build_chain(node.url)
        yield node.url
    finally:
        node.stop()


def load(name: str) -> dict[str, Any]:
    return json.loads((golden.DATA / name).read_text(encoding="utf-8"))


def js_check(rpc_url: str, files: dict[str, dict[str, Any]], side_key: str = golden.SIDE_KEY) -> dict[str, Any]:
    result = run_node("golden_proof.js", {"rpc": rpc_url, "sideKey": side_key,
                                          "files": [{"name": n, "proof": p} for n, p in files.items()]})
    return {r["name"]: r for r in result["results"]}


def failures(result: dict[str, Any]) -> set[str]:
    return {c["check"] for c in result["checks"] if not c["ok"]}


def test_every_golden_file_has_an_expectation() -> None:
    """A golden file added without saying what the JS references make of it fails here."""
    assert {p.name for p in golden.DATA.glob("*.json")} == set(EXPECTED_FAILURES)


def test_golden_files_by_the_js_references(rpc_url: str) -> None:
    results = js_check(rpc_url, {name: load(name) for name in EXPECTED_FAILURES})
    for name, expected in EXPECTED_FAILURES.items():
        result = results[name]
        assert [c["check"] for c in result["checks"]] == CHECKS, name
        assert failures(result) == expected, (name, result["checks"])
        assert result["ok"] is (not expected), name


def test_the_leaf_field_must_be_the_digests_leaf(rpc_url: str) -> None:
    """merkle.leaf is redundant with the digest; a file whose leaf disagrees with it is rejected."""
    data = load("valid.json")
    leaf = data["merkle"]["leaf"]
    data["merkle"]["leaf"] = leaf[:-1] + ("0" if leaf[-1] != "0" else "1")
    assert failures(js_check(rpc_url, {"leaf": data})["leaf"]) == {"leaf"}


def test_the_payload_does_not_open_with_another_side_key(rpc_url: str) -> None:
    """The restricted channel's payload only parses with its side key: mam.js is really checking it."""
    result = js_check(rpc_url, {"valid.json": load("valid.json")}, side_key="OTHERSIDEKEY" + "9" * 69)["valid.json"]
    assert failures(result) == {"MAM signature", "MAM reading"}


def test_nothing_passes_without_the_chain() -> None:
    """With no chain to read, every check of the chain fails: the JS side never takes the file's word for it."""
    result = js_check("http://127.0.0.1:9", {"valid.json": load("valid.json")})["valid.json"]
    assert failures(result) == {"chain id", "root", "merkle path", "transaction", "MAM root on chain"}


def test_the_address_must_be_the_roots(rpc_url: str) -> None:
    """A payload claimed to sit at another message's address (here period 2's) is rejected."""
    data = load("valid.json")
    data["mam"]["address"] = load("valid-period2.json")["mam"]["address"]
    assert failures(js_check(rpc_url, {"moved": data})["moved"]) == {"MAM address"}
