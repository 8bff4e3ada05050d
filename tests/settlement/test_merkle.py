"""settlement.merkle against the reference, @openzeppelin/merkle-tree (npm), run with node.

Every expected root and proof here comes from the JS library or from first principles (hashing by hand),
never from settlement.merkle itself.
"""
from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from settlement import merkle
from settlement.merkle import MerkleError, StandardMerkleTree
from tests.conftest import run_node

SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 300]


def _digest(rng: random.Random) -> bytes:
    return rng.randbytes(32)


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _random_trees(seed: int) -> list[list[bytes]]:
    rng = random.Random(seed)
    trees = [[_digest(rng) for _ in range(n)] for n in SIZES]
    trees += [[_digest(rng) for _ in range(rng.randint(1, 300))] for _ in range(6)]
    # duplicated values: the JS library keeps both leaves and looks a value up by its last occurrence
    dup = [_digest(rng) for _ in range(10)]
    trees.append(dup + dup[:4])
    return trees


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """Build all random trees once in JS, with proofs for every value and a few multiproofs per tree."""
    rng = random.Random(7)
    trees = _random_trees(1)
    request = {
        "trees": [
            {
                "values": [[_hex(d)] for d in digests],
                "encoding": ["bytes32"],
                "multi": [rng.sample(range(len(digests)), rng.randint(0, min(len(digests), 12))) for _ in range(3)],
            }
            for digests in trees
        ]
    }
    response = run_node("merkle_tree.js", request)
    return {"digests": trees, "request": request, "response": response}


def test_same_root_dump_and_proofs_as_openzeppelin(reference: dict[str, Any]) -> None:
    for digests, js in zip(reference["digests"], reference["response"]["trees"]):
        tree = merkle.build_reading_tree(digests)
        assert merkle.to_hex(tree.root) == js["root"], f"root differs for {len(digests)} leaves"
        assert tree.dump() == js["dump"]
        for i, digest in enumerate(digests):
            proof = [merkle.to_hex(p) for p in merkle.reading_proof(tree, i)]
            assert proof == js["proofs"][i], f"proof {i} of {len(digests)} differs"
            if digests.index(digest) == i and digests[::-1].index(digest) == len(digests) - 1 - i:
                # unique value: looking it up by value gives the same proof
                assert [merkle.to_hex(p) for p in merkle.reading_proof(tree, digest)] == proof


def test_js_proofs_verify_in_python_and_tampered_ones_do_not(reference: dict[str, Any]) -> None:
    rng = random.Random(3)
    for digests, js in zip(reference["digests"], reference["response"]["trees"]):
        root = js["root"]
        for i, digest in enumerate(digests):
            assert merkle.verify(root, digest, js["proofs"][i])
        i = rng.randrange(len(digests))
        proof = js["proofs"][i]
        other = _digest(rng)
        assert not merkle.verify(root, other, proof)
        if proof:
            bad = list(proof)
            k = rng.randrange(len(bad))
            flipped = bytearray(bytes.fromhex(bad[k][2:]))
            flipped[rng.randrange(32)] ^= 1 << rng.randrange(8)
            bad[k] = _hex(bytes(flipped))
            assert not merkle.verify(root, digests[i], bad)
            assert not merkle.verify(root, digests[i], proof[:-1])
        assert not merkle.verify(_hex(_digest(rng)), digests[i], proof)


def test_python_proofs_verify_in_js(reference: dict[str, Any]) -> None:
    rng = random.Random(4)
    checks: list[dict[str, Any]] = []
    expected: list[bool] = []
    for digests in reference["digests"]:
        tree = merkle.build_reading_tree(digests)
        for i in rng.sample(range(len(digests)), min(len(digests), 5)):
            proof = [merkle.to_hex(p) for p in merkle.reading_proof(tree, i)]
            checks.append({"root": merkle.to_hex(tree.root), "value": [_hex(digests[i])], "proof": proof, "encoding": ["bytes32"]})
            expected.append(True)
            checks.append({"root": merkle.to_hex(tree.root), "value": [_hex(_digest(rng))], "proof": proof, "encoding": ["bytes32"]})
            expected.append(False)
    result = run_node("merkle_tree.js", {"verify": checks})
    assert result["verify"] == expected


def test_multiproofs_match_and_cross_verify(reference: dict[str, Any]) -> None:
    cross: list[dict[str, Any]] = []
    for digests, req, js in zip(reference["digests"], reference["request"]["trees"], reference["response"]["trees"]):
        tree = merkle.build_reading_tree(digests)
        for indices, js_multi in zip(req["multi"], js["multi"]):
            mp = tree.get_multi_proof(indices)
            assert [[merkle.to_hex(v[0])] for v in mp.leaves] == js_multi["leaves"]
            assert [merkle.to_hex(p) for p in mp.proof] == js_multi["proof"]
            assert mp.proof_flags == js_multi["proofFlags"]
            js_as_py = merkle.MultiProof(
                leaves=[tuple(v) for v in js_multi["leaves"]], proof=js_multi["proof"], proof_flags=js_multi["proofFlags"]
            )
            assert merkle.verify_multi_proof(js["root"], js_as_py)
            cross.append(
                {
                    "root": js["root"],
                    "encoding": ["bytes32"],
                    "leaves": [[merkle.to_hex(v[0])] for v in mp.leaves],
                    "proof": [merkle.to_hex(p) for p in mp.proof],
                    "proofFlags": mp.proof_flags,
                }
            )
    result = run_node("merkle_tree.js", {"verifyMulti": cross})
    assert result["verifyMulti"] == [True] * len(cross)


def test_dumps_load_both_ways(reference: dict[str, Any]) -> None:
    digests = reference["digests"][20]
    js_dump = reference["response"]["trees"][20]["dump"]
    assert StandardMerkleTree.load(js_dump).root == merkle.build_reading_tree(digests).root
    py_dump = merkle.build_reading_tree(digests).dump()
    corrupted = dict(py_dump, tree=list(py_dump["tree"]))
    corrupted["tree"][1] = _hex(bytes(32))
    result = run_node("merkle_tree.js", {"load": [py_dump, corrupted]})
    assert result["load"][0] == {"ok": True, "root": py_dump["tree"][0]}
    assert result["load"][1]["ok"] is False
    with pytest.raises(MerkleError):
        StandardMerkleTree.load(corrupted)


def test_other_leaf_encodings_match_openzeppelin() -> None:
    """The README example shape (address, uint256) and a mixed one: proves the ABI encoding path is general."""
    rng = random.Random(11)
    values_a = [["0x" + rng.randbytes(20).hex(), str(rng.randrange(10**30))] for _ in range(37)]
    values_b = [[str(rng.randrange(2**64)), "0x" + rng.randbytes(32).hex(), bool(rng.getrandbits(1))] for _ in range(19)]
    request = {
        "trees": [
            {"values": values_a, "encoding": ["address", "uint256"], "multi": [[0, 5, 9]]},
            {"values": values_b, "encoding": ["uint64", "bytes32", "bool"], "multi": []},
        ]
    }
    js = run_node("merkle_tree.js", request)["trees"]

    def py_values(values: list[list[Any]], encoding: list[str]) -> list[tuple[Any, ...]]:
        out = []
        for v in values:
            out.append(tuple(int(x) if t.startswith("uint") else x for t, x in zip(encoding, v)))
        return out

    for req, ref in zip(request["trees"], js):
        tree = StandardMerkleTree.of(py_values(req["values"], req["encoding"]), req["encoding"])
        assert merkle.to_hex(tree.root) == ref["root"]
        assert [[merkle.to_hex(p) for p in tree.get_proof(i)] for i in range(len(req["values"]))] == ref["proofs"]


def test_golden_from_first_principles() -> None:
    """Hash by hand: leaf = keccak(keccak(abi.encode(bytes32))) = keccak(keccak(d)); node = keccak(sorted pair)."""
    d = [bytes([i]) * 32 for i in (1, 2, 3)]
    leaves = [keccak(keccak(x)) for x in d]
    # one leaf: the root is the leaf, the proof is empty
    one = merkle.build_reading_tree(d[:1])
    assert one.root == leaves[0] and merkle.reading_proof(one, 0) == []
    # two leaves: root = keccak(min ‖ max), each proof is the other leaf
    two = merkle.build_reading_tree(d[:2])
    assert two.root == keccak(min(leaves[0], leaves[1]) + max(leaves[0], leaves[1]))
    assert merkle.reading_proof(two, 0) == [leaves[1]]
    # three leaves, sorted s0 < s1 < s2, leaf k at index len-1-k: array [root, n1, s2, s1, s0];
    # n1 = H(tree[3], tree[4]) = H(s1, s0); root = H(n1, s2)
    s0, s1, s2 = sorted(leaves)
    h = lambda a, b: keccak(min(a, b) + max(a, b))  # noqa: E731
    three = merkle.build_reading_tree(d)
    assert three.tree == [h(h(s1, s0), s2), h(s1, s0), s2, s1, s0]
    assert merkle.reading_leaf(d[0]) == leaves[0]
    assert abi_encode(["bytes32"], [d[0]]) == d[0]


def test_invalid_inputs() -> None:
    with pytest.raises(MerkleError):
        merkle.build_reading_tree([])
    with pytest.raises(MerkleError):
        merkle.build_reading_tree([b"\x01" * 31])
    tree = merkle.build_reading_tree([b"\x01" * 32, b"\x02" * 32])
    with pytest.raises(MerkleError):
        merkle.reading_proof(tree, b"\x03" * 32)
    with pytest.raises(MerkleError):
        merkle.reading_proof(tree, 2)
    with pytest.raises(MerkleError):
        tree.get_multi_proof([0, 0])
    assert not merkle.verify(tree.root, b"\x01" * 32, ["0x1234"])
    assert not merkle.verify(tree.root, b"\x01" * 32, [])
    with pytest.raises(MerkleError):
        StandardMerkleTree.load({"format": "simple-v1", "leafEncoding": ["bytes32"], "tree": [], "values": []})
