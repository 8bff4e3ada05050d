"""settlement.abi against eth_abi (the reference): every type the SolarProperty artifacts name, both ways, and
malformed data refused."""
from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import decode as ref_decode
from eth_abi import encode as ref_encode
from eth_utils import to_checksum_address as ref_checksum

from settlement import abi
from settlement.chain import _canonical_type
from settlement.contract_artifact import load_artifact


def _sample(t: abi.AbiType, rng: random.Random) -> Any:
    if t.item is not None:
        return tuple(_sample(t.item, rng) for _ in range(t.length if t.length is not None else rng.randint(0, 3)))
    if t.base == "tuple":
        return tuple(_sample(c, rng) for c in t.components)
    if t.base == "uint":
        return rng.choice([0, 1, (1 << t.size) - 1, rng.getrandbits(t.size)])
    if t.base == "int":
        return rng.choice([0, -1, -(1 << (t.size - 1)), (1 << (t.size - 1)) - 1])
    if t.base == "bool":
        return rng.random() < 0.5
    if t.base == "address":
        return "0x" + rng.randbytes(20).hex()
    if t.base == "string":
        return rng.choice(["", "A" * 81, "héllo", "x" * 33])
    if t.base == "bytes" and t.size == 0:
        return rng.randbytes(rng.choice([0, 5, 32, 40]))
    return rng.randbytes(t.size)


def _artifact_types() -> set[str]:
    types: set[str] = set()
    for version in (1, 2):
        for entry in load_artifact(version)["abi"]:
            for key in ("inputs", "outputs"):
                for param in entry.get(key, []):
                    types.add(_canonical_type(param))
    return types


@pytest.mark.parametrize("type_", sorted(_artifact_types() | {"int256", "bytes", "uint8[2]", "(uint256,string)[]"}))
def test_codec_matches_eth_abi(type_: str) -> None:
    rng = random.Random(type_)
    parsed = abi.parse_type(type_)
    for _ in range(5):
        values = [_sample(parsed, rng), 7]
        types = [type_, "uint256"]
        expected = ref_encode(types, values)
        assert abi.encode(types, values) == expected
        assert abi.decode(types, expected) == ref_decode(types, expected)


def test_all_artifact_functions_and_events_parse() -> None:
    # a type the contract gains that this codec lacks fails here rather than at a user's verify
    for type_ in _artifact_types():
        abi.parse_type(type_)


@pytest.mark.parametrize("types,data", [
    (["bool"], (2).to_bytes(32, "big")),
    (["address"], b"\x01" + bytes(31)),
    (["uint8"], (256).to_bytes(32, "big")),
    (["bytes4"], b"abcde" + bytes(27)),
    (["uint256"], bytes(31)),
    (["string"], (32).to_bytes(32, "big") + (100).to_bytes(32, "big")),
    (["uint256[]"], (32).to_bytes(32, "big") + (10 ** 9).to_bytes(32, "big")),
    (["string"], (10 ** 6).to_bytes(32, "big")),
])
def test_malformed_data_is_refused(types: list[str], data: bytes) -> None:
    with pytest.raises(abi.AbiError):
        abi.decode(types, data)


def test_values_outside_their_type_are_refused() -> None:
    for types, values in ((["uint8"], [256]), (["uint256"], [-1]), (["bool"], [1]), (["bytes32"], [b"x"]),
                          (["address"], ["0x12"]), (["uint256[2]"], [[1]])):
        with pytest.raises(abi.AbiError):
            abi.encode(types, values)


def test_checksum_address_matches_eth_utils() -> None:
    rng = random.Random(1)
    for _ in range(20):
        raw = "0x" + rng.randbytes(20).hex()
        assert abi.to_checksum_address(raw) == ref_checksum(raw)
        assert abi.to_checksum_address(raw.upper().replace("0X", "0x")) == ref_checksum(raw)
    with pytest.raises(abi.AbiError):
        abi.to_checksum_address("0xnothex")


def test_selector_and_topic() -> None:
    assert abi.selector("transfer(address,uint256)").hex() == "a9059cbb"
    assert abi.topic("Transfer(address,address,uint256)") == \
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
