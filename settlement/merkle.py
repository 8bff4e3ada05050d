"""OpenZeppelin ``StandardMerkleTree`` in pure Python (no I/O).

Why this exists: each settlement period's readings become the leaves of a Merkle tree whose root goes on
chain; ``SolarProperty.verifyReading`` checks proofs with OpenZeppelin's ``MerkleProof.sol``, and anyone may
rebuild or check a proof with ``@openzeppelin/merkle-tree`` (npm). So the tree must be *byte-identical* to
that library's, not merely "a Merkle tree": same leaf hash, same node hash, same leaf order, same array
layout, same proofs. This module is a line-by-line port of ``@openzeppelin/merkle-tree`` 1.0.x
(``core.ts``/``merkletree.ts``/``standard.ts``), tested against it in ``tests/settlement/test_merkle.py``.

The format, in short:

* a *value* is a tuple of ABI values with a fixed *leaf encoding* (Solidity type names); SCB uses one
  ``bytes32`` per reading — the reading digest, ``keccak256(canonical reading bytes)`` — so values are
  ``(digest,)`` and the encoding is ``("bytes32",)`` (:data:`READING_ENCODING`);
* leaf = ``keccak256(keccak256(abi.encode(value)))`` — hashing twice makes a leaf (preimage 32·k bytes,
  hashed twice) impossible to confuse with an inner node (preimage 64 bytes, hashed once);
* inner node = ``keccak256(min(a, b) ‖ max(a, b))`` — *commutative*, so proofs need no left/right flags;
* leaves are sorted by hash (default ``sortLeaves: true``) and stored in a flat array of ``2n - 1`` nodes,
  root at index 0, children of ``i`` at ``2i + 1`` and ``2i + 2``, the sorted leaves at the end in reverse
  order (leaf ``k`` at ``len - 1 - k``);
* a proof is the list of sibling hashes from the leaf up to (excluding) the root.

Bytes are ``bytes`` everywhere; :meth:`StandardMerkleTree.dump` gives the JSON form the JS library uses
(``standard-v1``, lowercase ``0x`` hex).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from eth_hash.auto import keccak

from scb.errors import DataError

READING_ENCODING: tuple[str, ...] = ("bytes32",)
"""Leaf encoding of SCB readings: one ``bytes32`` value, the reading digest."""

Value = Sequence[Any]


class MerkleError(DataError, ValueError):
    """Invalid input to a Merkle function (the JS library throws in the same places)."""


def _as_bytes32(node: bytes | str) -> bytes:
    """Accept a 32-byte node as bytes or ``0x`` hex (the JS library accepts both)."""
    if isinstance(node, str):
        text = node[2:] if node[:2] in ("0x", "0X") else node
        try:
            node = bytes.fromhex(text)
        except ValueError as exc:
            raise MerkleError(f"not hex: {node!r}") from exc
    if not isinstance(node, (bytes, bytearray)) or len(node) != 32:
        raise MerkleError("Merkle tree nodes must be 32 bytes")
    return bytes(node)


def to_hex(data: bytes) -> str:
    """Lowercase ``0x`` hex, the form @openzeppelin/merkle-tree prints."""
    return "0x" + bytes(data).hex()


def _normalize_value(value: Value, leaf_encoding: Sequence[str]) -> tuple[Any, ...]:
    """Turn hex strings into bytes for ``bytesN``/``bytes`` types, so JS-style JSON values encode the same."""
    if isinstance(value, (str, bytes, bytearray)):
        raise MerkleError("a value is a sequence with one item per leaf-encoding type, e.g. (digest,)")
    if len(value) != len(leaf_encoding):
        raise MerkleError(f"value has {len(value)} items, leaf encoding has {len(leaf_encoding)}")
    out: list[Any] = []
    for typ, item in zip(leaf_encoding, value):
        if typ.startswith("bytes") and isinstance(item, str):
            text = item[2:] if item[:2] in ("0x", "0X") else item
            item = bytes.fromhex(text)
        if typ.startswith("bytes") and typ != "bytes" and len(item) != int(typ[5:]):
            raise MerkleError(f"{typ} value must be exactly {typ[5:]} bytes, got {len(item)}")
        out.append(item)
    return tuple(out)


def standard_leaf_hash(value: Value, leaf_encoding: Sequence[str] = READING_ENCODING) -> bytes:
    """``keccak256(keccak256(abi.encode(value)))`` — the leaf as ``MerkleProof.sol`` expects it."""
    normalized = _normalize_value(value, leaf_encoding)
    if tuple(leaf_encoding) == READING_ENCODING:
        # abi.encode of one bytes32 is the 32 bytes themselves: skip eth_abi's encoder lookup, which costs ~20x
        # the two hashes (a period of 1,000 readings is hashed at every settlement, proof export and rebuild)
        return keccak(keccak(normalized[0]))
    # eth_abi imported here, not at the top: only other leaf encodings need it, and its import costs `scb verify`
    # a third of its one-second budget (issue 16)
    from eth_abi import encode as abi_encode

    return keccak(keccak(abi_encode(list(leaf_encoding), list(normalized))))


def reading_leaf(digest: bytes | str) -> bytes:
    """Leaf of one reading digest (``bytes32``); the same hash ``SolarProperty.verifyReading`` applies."""
    return standard_leaf_hash((_as_bytes32(digest),), READING_ENCODING)


def standard_node_hash(a: bytes, b: bytes) -> bytes:
    """Commutative pair hash: keccak256 of the two nodes in ascending byte order."""
    return keccak(a + b if a <= b else b + a)


# ---------------------------------------------------------------------------- core (array layout)

def _left(i: int) -> int:
    return 2 * i + 1


def _right(i: int) -> int:
    return 2 * i + 2


def _parent(i: int) -> int:
    if i <= 0:
        raise MerkleError("Root has no parent")
    return (i - 1) // 2


def _sibling(i: int) -> int:
    if i <= 0:
        raise MerkleError("Root has no siblings")
    # JS: i - (-1) ** (i % 2): odd (left child) -> i + 1, even (right child) -> i - 1
    return i + 1 if i % 2 == 1 else i - 1


def _is_leaf_node(tree: Sequence[bytes], i: int) -> bool:
    return 0 <= i < len(tree) and not (_left(i) < len(tree))


def make_merkle_tree(leaves: Sequence[bytes]) -> list[bytes]:
    """The flat node array for already-hashed, already-ordered leaves (``core.makeMerkleTree``)."""
    if not leaves:
        raise MerkleError("Expected non-zero number of leaves")
    checked = [_as_bytes32(leaf) for leaf in leaves]
    size = 2 * len(checked) - 1
    tree: list[bytes] = [b""] * size
    for i, leaf in enumerate(checked):
        tree[size - 1 - i] = leaf
    for i in range(size - 1 - len(checked), -1, -1):
        tree[i] = standard_node_hash(tree[_left(i)], tree[_right(i)])
    return tree


def get_proof(tree: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from tree node ``index`` (a leaf) up to the root (``core.getProof``)."""
    if not _is_leaf_node(tree, index):
        raise MerkleError("Index is not a leaf")
    proof: list[bytes] = []
    while index > 0:
        proof.append(tree[_sibling(index)])
        index = _parent(index)
    return proof


def process_proof(leaf: bytes | str, proof: Iterable[bytes | str]) -> bytes:
    """Fold a proof onto a leaf hash; equals the root iff the proof is valid (``MerkleProof.processProof``)."""
    node = _as_bytes32(leaf)
    for sibling in proof:
        node = standard_node_hash(node, _as_bytes32(sibling))
    return node


@dataclass(frozen=True)
class MultiProof:
    """A multiproof in the JS library's shape: ``leaves`` are values (tree) or leaf hashes (core)."""

    leaves: list[Any]
    proof: list[bytes]
    proof_flags: list[bool]


def get_multi_proof(tree: Sequence[bytes], indices: Sequence[int]) -> MultiProof:
    """Multiproof for tree node ``indices`` (``core.getMultiProof``): leaves come out in descending tree index."""
    for i in indices:
        if not _is_leaf_node(tree, i):
            raise MerkleError("Index is not a leaf")
    ordered = sorted(indices, reverse=True)
    if any(a == b for a, b in zip(ordered, ordered[1:])):
        raise MerkleError("Cannot prove duplicated index")
    stack = list(ordered)
    proof: list[bytes] = []
    flags: list[bool] = []
    while stack and stack[0] > 0:
        j = stack.pop(0)
        s = _sibling(j)
        p = _parent(j)
        if stack and s == stack[0]:
            flags.append(True)
            stack.pop(0)
        else:
            flags.append(False)
            proof.append(tree[s])
        stack.append(p)
    if not ordered:
        proof.append(tree[0])
    return MultiProof(leaves=[tree[i] for i in ordered], proof=proof, proof_flags=flags)


def process_multi_proof(leaves: Sequence[bytes], proof: Sequence[bytes], proof_flags: Sequence[bool]) -> bytes:
    """Root implied by a multiproof over leaf hashes (``core.processMultiProof``)."""
    leaf_nodes = [_as_bytes32(x) for x in leaves]
    proof_nodes = [_as_bytes32(x) for x in proof]
    if len(proof_nodes) < sum(1 for f in proof_flags if not f):
        raise MerkleError("Invalid multiproof format")
    if len(leaf_nodes) + len(proof_nodes) != len(proof_flags) + 1:
        raise MerkleError("Provided leaves and multiproof are not compatible")
    stack = list(leaf_nodes)
    rest = list(proof_nodes)
    for flag in proof_flags:
        if not stack:
            raise MerkleError("Invalid multiproof")
        a = stack.pop(0)
        if flag:
            if not stack:
                raise MerkleError("Invalid multiproof")
            b = stack.pop(0)
        else:
            if not rest:
                raise MerkleError("Invalid multiproof")
            b = rest.pop(0)
        stack.append(standard_node_hash(a, b))
    if len(stack) + len(rest) != 1:
        raise MerkleError("Invalid multiproof")
    return stack.pop() if stack else rest.pop(0)


# ---------------------------------------------------------------------------- the tree


class StandardMerkleTree:
    """A StandardMerkleTree over values with a fixed leaf encoding; identical to ``@openzeppelin/merkle-tree``.

    Build with :meth:`of` (or :func:`build_reading_tree` for reading digests). ``values`` keeps the caller's
    order; each value remembers where its leaf sits in ``tree``.
    """

    def __init__(self, tree: list[bytes], values: list[tuple[tuple[Any, ...], int]], leaf_encoding: Sequence[str]):
        self.tree = tree
        self.values = values
        self.leaf_encoding = tuple(leaf_encoding)
        # Like the JS hashLookup: a duplicated value maps to its last occurrence.
        self._lookup = {tree[tree_index]: i for i, (_, tree_index) in enumerate(values)}

    @classmethod
    def of(
        cls, values: Sequence[Value], leaf_encoding: Sequence[str] = READING_ENCODING, sort_leaves: bool = True
    ) -> "StandardMerkleTree":
        """Build the tree; leaves sorted by hash (stable, as in JS) unless ``sort_leaves`` is False."""
        normalized = [_normalize_value(v, leaf_encoding) for v in values]
        hashed = [(standard_leaf_hash(v, leaf_encoding), i) for i, v in enumerate(normalized)]
        if sort_leaves:
            hashed.sort(key=lambda item: item[0])  # Python's sort is stable, like Array.prototype.sort
        tree = make_merkle_tree([h for h, _ in hashed])
        tree_index = [0] * len(normalized)
        for leaf_index, (_, value_index) in enumerate(hashed):
            tree_index[value_index] = len(tree) - leaf_index - 1
        return cls(tree, [(v, tree_index[i]) for i, v in enumerate(normalized)], leaf_encoding)

    @classmethod
    def load(cls, data: dict[str, Any]) -> "StandardMerkleTree":
        """Load a ``standard-v1`` dump (from this module or from JS ``tree.dump()``) and validate it."""
        if data.get("format") != "standard-v1":
            raise MerkleError(f"Unknown format '{data.get('format')}'")
        if data.get("leafEncoding") is None:
            raise MerkleError("Expected leaf encoding")
        encoding = tuple(data["leafEncoding"])
        tree = [_as_bytes32(node) for node in data["tree"]]
        values = [(_normalize_value(v["value"], encoding), int(v["treeIndex"])) for v in data["values"]]
        loaded = cls(tree, values, encoding)
        loaded.validate()
        return loaded

    @property
    def root(self) -> bytes:
        """The Merkle root (what ``settle`` puts on chain)."""
        return self.tree[0]

    def __len__(self) -> int:
        return len(self.values)

    def leaf_hash(self, value: Value) -> bytes:
        return standard_leaf_hash(value, self.leaf_encoding)

    def _value_index(self, value_or_index: Value | int) -> int:
        if isinstance(value_or_index, int):
            if not 0 <= value_or_index < len(self.values):
                raise MerkleError("Index out of bounds")
            return value_or_index
        found = self._lookup.get(self.leaf_hash(value_or_index))
        if found is None:
            raise MerkleError("Leaf is not in tree")
        return found

    def _validate_value_at(self, index: int) -> None:
        value, tree_index = self.values[index]
        if self.tree[tree_index] != self.leaf_hash(value):
            raise MerkleError("Merkle tree does not contain the expected value")

    def validate(self) -> None:
        """Check every value's leaf and every inner node (``isValidMerkleTree``)."""
        for i in range(len(self.values)):
            self._validate_value_at(i)
        if not self.tree:
            raise MerkleError("Merkle tree is invalid")
        for i, node in enumerate(self.tree):
            left, right = _left(i), _right(i)
            if right >= len(self.tree):
                if left < len(self.tree):
                    raise MerkleError("Merkle tree is invalid")
            elif node != standard_node_hash(self.tree[left], self.tree[right]):
                raise MerkleError("Merkle tree is invalid")

    def get_proof(self, value_or_index: Value | int) -> list[bytes]:
        """Proof for a value (or its index in ``values``), checked before it is returned, as in JS."""
        index = self._value_index(value_or_index)
        self._validate_value_at(index)
        _, tree_index = self.values[index]
        proof = get_proof(self.tree, tree_index)
        if process_proof(self.tree[tree_index], proof) != self.root:
            raise MerkleError("Unable to prove value")
        return proof

    def get_multi_proof(self, values_or_indices: Sequence[Value | int]) -> MultiProof:
        """Multiproof for several values; ``leaves`` of the result are values, in the JS library's order."""
        indices = [self._value_index(v) for v in values_or_indices]
        for i in indices:
            self._validate_value_at(i)
        core = get_multi_proof(self.tree, [self.values[i][1] for i in indices])
        if process_multi_proof(core.leaves, core.proof, core.proof_flags) != self.root:
            raise MerkleError("Unable to prove values")
        return MultiProof(
            leaves=[self.values[self._lookup[h]][0] for h in core.leaves],
            proof=core.proof,
            proof_flags=core.proof_flags,
        )

    def verify(self, value_or_index: Value | int, proof: Sequence[bytes | str]) -> bool:
        if isinstance(value_or_index, int):
            value = self.values[self._value_index(value_or_index)][0]
        else:
            value = value_or_index
        return process_proof(self.leaf_hash(value), proof) == self.root

    def verify_multi_proof(self, multiproof: MultiProof) -> bool:
        return verify_multi_proof(self.root, multiproof, self.leaf_encoding)

    def dump(self) -> dict[str, Any]:
        """The JS ``dump()`` form (``standard-v1``) with hex strings, JSON-ready."""
        return {
            "format": "standard-v1",
            "leafEncoding": list(self.leaf_encoding),
            "tree": [to_hex(node) for node in self.tree],
            "values": [
                {"value": [_json_item(t, x) for t, x in zip(self.leaf_encoding, value)], "treeIndex": tree_index}
                for value, tree_index in self.values
            ],
        }


def _json_item(typ: str, item: Any) -> Any:
    if typ.startswith("bytes"):
        return to_hex(item)
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    return item


def verify(
    root: bytes | str, value: Value | bytes | str, proof: Sequence[bytes | str], leaf_encoding: Sequence[str] = READING_ENCODING
) -> bool:
    """``StandardMerkleTree.verify``: does ``proof`` prove ``value`` under ``root``? Never raises for a bad proof.

    For the reading encoding a bare 32-byte digest (bytes or hex) is accepted as the value.
    """
    if isinstance(value, (bytes, bytearray, str)):
        value = (value,)
    try:
        return process_proof(standard_leaf_hash(value, leaf_encoding), proof) == _as_bytes32(root)
    except MerkleError:
        return False


def verify_multi_proof(root: bytes | str, multiproof: MultiProof, leaf_encoding: Sequence[str] = READING_ENCODING) -> bool:
    """``StandardMerkleTree.verifyMultiProof`` over values."""
    try:
        leaves = [standard_leaf_hash(v, leaf_encoding) for v in multiproof.leaves]
        return process_multi_proof(leaves, multiproof.proof, multiproof.proof_flags) == _as_bytes32(root)
    except MerkleError:
        return False


# ---------------------------------------------------------------------------- readings convenience


def build_reading_tree(digests: Sequence[bytes | str]) -> StandardMerkleTree:
    """Tree of one settlement period: one ``bytes32`` leaf value per reading digest, in any order."""
    return StandardMerkleTree.of([(_as_bytes32(d),) for d in digests], READING_ENCODING)


def reading_proof(tree: StandardMerkleTree, digest_or_index: bytes | str | int) -> list[bytes]:
    """Proof of one reading digest (or of the value at an index of the digests the tree was built from)."""
    if isinstance(digest_or_index, int):
        return tree.get_proof(digest_or_index)
    return tree.get_proof((_as_bytes32(digest_or_index),))
