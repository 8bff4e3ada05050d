"""A small Solidity ABI codec: the types SolarProperty's views, events and errors use, without eth_abi.

Why not eth_abi: importing it costs about 0.3 s (eth_utils, eth_typing, pydantic, parsimonious), a third of the
second `scb verify` has (issue 16), for encoding and decoding a handful of fixed types. This codec covers what
the contract's ABI uses: `uintN`, `intN`, `bool`, `address`, `bytesN`, `bytes`, `string`, arrays (`T[]`,
`T[k]`) and tuples `(T1,...)`, in the standard head/tail layout. Values come out as eth_abi 6 gives them
(addresses as lower-case 0x hex, arrays and tuples as tuples), so `tests/settlement/test_abi.py` checks the two
against each other on every type the artifact names.

Decoding is strict: a value outside its type (non-zero padding, a bool other than 0/1, an offset or a length past
the end of the data) is `AbiError`, so an answer that is not what the contract returns is refused, never guessed.

`keccak` is the project's one keccak256 (eth_hash, already a dependency of the readings' digests).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_hash.auto import keccak

from scb.errors import DataError

WORD = 32


class AbiError(DataError):
    """Data that is not a valid ABI encoding of the expected types, or a value that does not fit its type."""


@dataclass(frozen=True)
class AbiType:
    """One parsed type: `base` ("uint", "int", "bool", "address", "bytes", "string", "tuple"), `size` (bits of
    an int, bytes of a bytesN, 0 for dynamic bytes), `item` and `length` for arrays (length None: `T[]`)."""

    base: str
    size: int = 0
    components: tuple[AbiType, ...] = ()
    item: AbiType | None = None
    length: int | None = None

    @property
    def dynamic(self) -> bool:
        if self.item is not None:
            return self.length is None or self.item.dynamic
        if self.base == "tuple":
            return any(c.dynamic for c in self.components)
        return self.base == "string" or (self.base == "bytes" and self.size == 0)

    @property
    def head_size(self) -> int:
        """Bytes this type takes in its enclosing head (a static tuple or fixed array is inlined)."""
        if self.dynamic:
            return WORD
        if self.item is not None:
            return self.item.head_size * int(self.length or 0)
        if self.base == "tuple":
            return sum(c.head_size for c in self.components)
        return WORD


def _split_top(inner: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for p in parts if p] if inner else []


@lru_cache(maxsize=256)
def parse_type(text: str) -> AbiType:
    """`uint256`, `bytes32[]`, `(address,uint16)[3]` ... as an AbiType; AbiError for a type this codec lacks."""
    text = text.strip()
    if text.endswith("]"):
        open_at = text.rindex("[")
        size = text[open_at + 1:-1]
        return AbiType("array", item=parse_type(text[:open_at]), length=int(size) if size else None)
    if text.startswith("("):
        return AbiType("tuple", components=tuple(parse_type(p) for p in _split_top(text[1:-1])))
    for base in ("uint", "int"):
        if text.startswith(base) and text[len(base):].isdigit() or text == base:
            bits = int(text[len(base):] or 256)
            if bits % 8 or not 8 <= bits <= 256:
                break
            return AbiType(base, bits)
    if text in ("bool", "address", "string"):
        return AbiType(text)
    if text == "bytes":
        return AbiType("bytes", 0)
    if text.startswith("bytes") and text[5:].isdigit() and 1 <= int(text[5:]) <= 32:
        return AbiType("bytes", int(text[5:]))
    raise AbiError(f"ABI type {text!r} is not one this codec reads")


# ------------------------------------------------------------------------------------------------ encoding


def _pad_right(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % WORD)


def _encode_static(t: AbiType, value: Any) -> bytes:
    if t.base == "uint":
        number = int(value)
        if isinstance(value, bool) or not 0 <= number < 1 << t.size:
            raise AbiError(f"{value!r} is not a uint{t.size}")
        return number.to_bytes(WORD, "big")
    if t.base == "int":
        number = int(value)
        if isinstance(value, bool) or not -(1 << (t.size - 1)) <= number < 1 << (t.size - 1):
            raise AbiError(f"{value!r} is not an int{t.size}")
        return number.to_bytes(WORD, "big", signed=True)
    if t.base == "bool":
        if not isinstance(value, bool):
            raise AbiError(f"{value!r} is not a bool")
        return int(value).to_bytes(WORD, "big")
    if t.base == "address":
        return b"\x00" * 12 + address_bytes(value)
    if t.base == "bytes":
        raw = bytes(value)
        if len(raw) != t.size:
            raise AbiError(f"{len(raw)} bytes are not a bytes{t.size}")
        return _pad_right(raw)
    raise AbiError(f"cannot encode {t.base}")  # pragma: no cover - parse_type admits no other static base


def _encode_one(t: AbiType, value: Any) -> bytes:
    """The encoding of `value` as it stands in a tail (or, static, inline in a head)."""
    if t.item is not None:
        items = list(value)
        if t.length is not None and len(items) != t.length:
            raise AbiError(f"{len(items)} items are not a {t.length}-item array")
        body = _encode_sequence([t.item] * len(items), items)
        return (len(items).to_bytes(WORD, "big") + body) if t.length is None else body
    if t.base == "tuple":
        items = list(value)
        if len(items) != len(t.components):
            raise AbiError(f"{len(items)} values are not a {len(t.components)}-field tuple")
        return _encode_sequence(list(t.components), items)
    if t.base == "string":
        raw = str(value).encode("utf-8")
        return len(raw).to_bytes(WORD, "big") + _pad_right(raw)
    if t.base == "bytes" and t.size == 0:
        raw = bytes(value)
        return len(raw).to_bytes(WORD, "big") + _pad_right(raw)
    return _encode_static(t, value)


def _encode_sequence(types: Sequence[AbiType], values: Sequence[Any]) -> bytes:
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = sum(t.head_size for t in types)
    for t, value in zip(types, values):
        encoded = _encode_one(t, value)
        if t.dynamic:
            heads.append(offset.to_bytes(WORD, "big"))
            tails.append(encoded)
            offset += len(encoded)
        else:
            heads.append(encoded)
    return b"".join(heads) + b"".join(tails)


def encode(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """`abi.encode(values...)` of `types` (as eth_abi.encode)."""
    if len(types) != len(values):
        raise AbiError(f"{len(values)} values for {len(types)} types")
    return _encode_sequence([parse_type(t) for t in types], list(values))


def selector(signature: str) -> bytes:
    """The 4-byte selector of `name(type,...)` (a function or a custom error)."""
    return keccak(signature.encode("ascii"))[:4]


def topic(signature: str) -> str:
    """topic0 of event `Name(type,...)`, 0x hex."""
    return "0x" + keccak(signature.encode("ascii")).hex()


# ------------------------------------------------------------------------------------------------ decoding


def _word(data: bytes, at: int) -> bytes:
    if at < 0 or at + WORD > len(data):
        raise AbiError(f"the data ends at byte {len(data)}, before the word at {at}")
    return data[at:at + WORD]


def _uint(data: bytes, at: int) -> int:
    return int.from_bytes(_word(data, at), "big")


def _decode_static(t: AbiType, word: bytes) -> Any:
    if t.base == "uint":
        number = int.from_bytes(word, "big")
        if number >> t.size:
            raise AbiError(f"{number} does not fit a uint{t.size}")
        return number
    if t.base == "int":
        number = int.from_bytes(word, "big", signed=True)
        if not -(1 << (t.size - 1)) <= number < 1 << (t.size - 1):
            raise AbiError(f"{number} does not fit an int{t.size}")
        return number
    if t.base == "bool":
        number = int.from_bytes(word, "big")
        if number > 1:
            raise AbiError(f"{number} is not a bool")
        return bool(number)
    if t.base == "address":
        if any(word[:12]):
            raise AbiError("an address with non-zero padding")
        return "0x" + word[12:].hex()
    if any(word[t.size:]):  # bytesN
        raise AbiError(f"a bytes{t.size} with non-zero padding")
    return word[:t.size]


def _decode_at(t: AbiType, data: bytes, at: int) -> Any:
    """The value of type `t` whose encoding starts at byte `at` of `data` (a tail, or inline when static)."""
    if t.item is not None:
        count, start = (t.length, at) if t.length is not None else (_uint(data, at), at + WORD)
        if count * min(t.item.head_size, WORD) > len(data) - start:
            raise AbiError(f"an array of {count} items does not fit in the data")
        return _decode_sequence([t.item] * count, data, start)
    if t.base == "tuple":
        return _decode_sequence(list(t.components), data, at)
    if t.base == "string" or (t.base == "bytes" and t.size == 0):
        length = _uint(data, at)
        if length > len(data) - at - WORD:
            raise AbiError(f"a {t.base} of {length} bytes does not fit in the data")
        raw = data[at + WORD:at + WORD + length]
        if any(data[at + WORD + length:at + WORD + length + (-length % WORD)]):
            raise AbiError(f"a {t.base} with non-zero padding")
        if t.base == "bytes":
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AbiError("a string that is not UTF-8") from None
    return _decode_static(t, _word(data, at))


def _decode_sequence(types: Sequence[AbiType], data: bytes, start: int) -> tuple[Any, ...]:
    out: list[Any] = []
    pos = start
    for t in types:
        if t.dynamic:
            offset = _uint(data, pos)
            if offset > len(data):
                raise AbiError(f"an offset {offset} past the end of the data")
            out.append(_decode_at(t, data, start + offset))
        else:
            out.append(_decode_at(t, data, pos))
        pos += t.head_size
    return tuple(out)


def decode(types: Sequence[str], data: bytes) -> tuple[Any, ...]:
    """The values `types` encode in `data` (as eth_abi.decode); AbiError when `data` is not such an encoding."""
    parsed = [parse_type(t) for t in types]
    if len(data) < sum(t.head_size for t in parsed):
        raise AbiError(f"{len(data)} bytes are too short for ({','.join(types)})")
    return _decode_sequence(parsed, bytes(data), 0)


# ------------------------------------------------------------------------------------------------ addresses


def address_bytes(value: Any) -> bytes:
    """The 20 bytes of an address given as 0x hex (any case) or bytes."""
    if isinstance(value, (bytes, bytearray)) and len(value) == 20:
        return bytes(value)
    text = str(value)
    if not (text.startswith(("0x", "0X")) and len(text) == 42):
        raise AbiError(f"{value!r} is not an address (0x and 40 hex digits)")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raw = b""
    if len(raw) != 20:  # also bytes.fromhex skipping spaces between bytes
        raise AbiError(f"{value!r} is not an address (0x and 40 hex digits)")
    return raw


def to_checksum_address(value: Any) -> str:
    """The EIP-55 mixed-case form of an address (what eth_utils.to_checksum_address returns)."""
    lower = address_bytes(value).hex()
    digest = keccak(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(lower, digest))
