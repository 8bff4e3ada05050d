"""The hub's Ethereum signing core: keys, transactions, personal messages, development accounts and keystores.

Why this module exists: eth_account (with eth_keys, eth_utils, rlp, pydantic, and web3 around them) costs about
25-50 MB of resident memory *per process* on a Raspberry Pi, each of the hub's processes signs or derives an
address, and all the hub needs of them is this: secp256k1 ECDSA, Ethereum RLP, two transaction kinds, EIP-191
messages, BIP-39/BIP-32 for the public development accounts and Web3 Secret Storage v3 for real keys. So it is
written here from the specifications, with the standard library, the project's keccak256 and EIP-55 checksum
(settlement.abi) and, only inside `decrypt_keystore`, pycryptodome's AES. None of eth_utils, eth_account, eth_keys,
rlp, pydantic or web3 is imported; `tests/settlement/test_signing.py` checks that, and checks every output
byte for byte against eth_account 0.14 / eth_keys / rlp, which are the reference in the tests only.

The module does no I/O: callers read keystore files and passwords (settlement.chain) and send transactions.

Specifications followed:

* secp256k1 ECDSA per SEC 1 v2 (section 4.1.3), with the nonce `k` derived per RFC 6979 (HMAC-SHA256) and low-s
  normalisation (EIP-2: a signature with s > N/2 is refused by the chain, so it is replaced by N - s and the
  recovery id flipped). Points are kept in Jacobian coordinates so that a scalar multiplication needs one modular
  inversion, at the end.
* Ethereum RLP (the yellow paper, appendix B).
* Legacy transactions with EIP-155 replay protection, and EIP-1559 (type 2, EIP-2718 envelope) with an empty
  access list.
* EIP-191 version 0x45 ("personal_sign") messages.
* BIP-39 seeds and BIP-32 private derivation.
* Web3 Secret Storage v3 (scrypt or PBKDF2-HMAC-SHA256, AES-128-CTR, keccak MAC).

Not defended: timing side channels. Python's big integers are not constant-time, so the time a signature takes
leaks something about the key to whoever can measure it at microsecond precision; that is someone already on the
hub's machine, who could read the key there. Signing happens on the hub itself, never as a service to others.
"""
from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scb.errors import DataError
from settlement.abi import AbiError, address_bytes, keccak, to_checksum_address

# ---------------------------------------------------------------------------------------------------- secp256k1

#: the field prime, the group order and the generator of secp256k1 (SEC 2 v2, section 2.4.1)
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
_GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8

#: a point in Jacobian coordinates (X, Y, Z) stands for the affine point (X / Z^2, Y / Z^3); Z = 0 is infinity
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (0, 1, 0)


def _double(point: _Jacobian) -> _Jacobian:
    """2 * point ("dbl-2009-l" of the Explicit-Formulas Database, for curves with a = 0 as secp256k1 has)."""
    x, y, z = point
    if z == 0 or y == 0:  # infinity, or a point of order 2 (secp256k1 has none, but the formula would divide by 0)
        return _INFINITY
    a = x * x % P
    b = y * y % P
    c = b * b % P
    d = 2 * ((x + b) * (x + b) - a - c) % P
    e = 3 * a % P
    x3 = (e * e - 2 * d) % P
    return x3, (e * (d - x3) - 8 * c) % P, 2 * y * z % P


def _add_affine(point: _Jacobian, qx: int, qy: int) -> _Jacobian:
    """point + (qx, qy) with the second point affine (Z = 1), "madd-2007-bl": cheaper than a general addition,
    and the generator, the only point ever added here, is affine."""
    x1, y1, z1 = point
    if z1 == 0:
        return qx, qy, 1
    z1z1 = z1 * z1 % P
    h = (qx * z1z1 - x1) % P
    r = 2 * (qy * z1 * z1z1 - y1) % P
    if h == 0:  # the same x: the same point (double it) or its negation (the sum is infinity)
        return _double(point) if r == 0 else _INFINITY
    hh = h * h % P
    i = 4 * hh
    j = h * i % P
    v = x1 * i % P
    x3 = (r * r - j - 2 * v) % P
    return x3, (r * (v - x3) - 2 * y1 * j) % P, ((z1 + h) * (z1 + h) - z1z1 - hh) % P


def _multiply_g(scalar: int) -> tuple[int, int]:
    """scalar * G as an affine (x, y), for 1 <= scalar < N (never infinity then).

    Double-and-add from the top bit, all in Jacobian coordinates, so the one inversion (`pow(z, -1, P)`) is at
    the end rather than one per step."""
    point = _INFINITY
    for bit in bin(scalar)[2:]:
        point = _double(point)
        if bit == "1":
            point = _add_affine(point, _GX, _GY)
    x, y, z = point
    z_inv = pow(z, -1, P)
    z_inv2 = z_inv * z_inv % P
    return x * z_inv2 % P, y * z_inv2 * z_inv % P


def _rfc6979_k(secret: int, digest: bytes) -> Iterator[int]:
    """The candidates for the ECDSA nonce k of RFC 6979 section 3.2 (HMAC-SHA256, qlen = hlen = 256), in order.

    Deterministic: the same key and digest always give the same k, so a signature needs no random number
    generator (a repeated or biased random k gives the key away). Candidates outside [1, N-1] are skipped
    (step h.3); the caller asks for the next one when a k gives an unusable signature (r or s of 0, or R.x >= N).
    """
    key_octets = secret.to_bytes(32, "big")
    # bits2octets: the digest as an integer reduced mod N (it may be >= N, N is a little below 2^256)
    hash_octets = (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + key_octets + hash_octets, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + key_octets + hash_octets, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()  # one HMAC output is qlen bits: T = V
        candidate = int.from_bytes(v, "big")
        if 1 <= candidate < N:
            yield candidate
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def _sign_digest(secret: int, digest: bytes) -> tuple[int, int, int]:
    """ECDSA signature (recovery id 0/1, r, s) of a 32-byte digest with low s (SEC 1 section 4.1.3, EIP-2).

    The recovery id is R.y's parity: with r it lets anyone recover the public key, which is how Ethereum finds
    the sender. SEC 1's recovery id would be +2 when R.x >= N (r = R.x - N); Ethereum's v has no room for that,
    so such a k (probability about 2^-128) is skipped for the next RFC 6979 candidate instead."""
    z = int.from_bytes(digest, "big")
    for k in _rfc6979_k(secret, digest):
        rx, ry = _multiply_g(k)
        if rx >= N:
            continue
        r = rx  # never 0: x = 0 is not on secp256k1 (7 is not a square mod P)
        s = pow(k, -1, N) * (z + r * secret) % N
        if s == 0:
            continue
        recovery_id = ry & 1
        if s > N // 2:  # (r, N - s) is the same signature with the negated R: flip the parity with it
            s = N - s
            recovery_id ^= 1
        return recovery_id, r, s
    raise AssertionError("unreachable: _rfc6979_k never ends")  # pragma: no cover


def _address_of(secret: int) -> str:
    """The checksummed address of a private key: the last 20 bytes of keccak(x || y) of its public key."""
    x, y = _multiply_g(secret)
    return to_checksum_address(keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:])


# ---------------------------------------------------------------------------------------------------------- RLP


def _length_prefix(length: int, offset: int) -> bytes:
    """The RLP header of a string (offset 0x80) or list (0xC0) payload of `length` bytes: one byte up to 55,
    else the length's own length and then the length (lengths of 2^64 and more cannot exist in memory)."""
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def rlp_encode(item: bytes | int | Sequence[Any]) -> bytes:
    """Ethereum RLP of bytes, a non-negative int (minimal big-endian bytes, 0 is the empty string) or a list of
    those (nested to any depth).

    A str is refused (TypeError): whether "0x12" means its text or its hex is the caller's to say. So is a bool,
    which is an int to Python but never a field of a transaction."""
    if isinstance(item, bool):
        raise TypeError("RLP encodes bytes, non-negative ints and lists, not a bool")
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP has no negative integers")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if len(data) == 1 and data[0] < 0x80:  # a single low byte is its own encoding
            return data
        return _length_prefix(len(data), 0x80) + data
    if isinstance(item, str):
        raise TypeError("RLP encodes bytes, not str: encode the text or decode the hex first")
    if isinstance(item, Sequence):
        payload = b"".join(rlp_encode(element) for element in item)
        return _length_prefix(len(payload), 0xC0) + payload
    raise TypeError(f"RLP encodes bytes, non-negative ints and lists, not {type(item).__name__}")


# ------------------------------------------------------------------------------------------------ addresses


def _address_bytes(value: Any, what: str) -> bytes:
    """The 20 bytes of an address given as 0x hex or bytes. Mixed case must be a valid EIP-55 checksum: that is
    what the checksum is for (a mistyped address is refused rather than paid); all-lower or all-upper hex carries
    no checksum and is taken as it is."""
    if not isinstance(value, (str, bytes, bytearray)):
        raise ValueError(f"{what} {value!r} is not an address (0x and 40 hex digits)")
    try:
        raw = address_bytes(value)
    except AbiError:
        raise ValueError(f"{what} {value!r} is not an address (0x and 40 hex digits)") from None
    if isinstance(value, (bytes, bytearray)):
        return raw
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and to_checksum_address(raw)[2:] != digits:
        raise ValueError(f"{what} {value!r} has a wrong EIP-55 checksum (a mistyped address?)")
    return raw


def create_address(sender: str, nonce: int) -> str:
    """The checksummed address of the contract that `sender` creates with its transaction of nonce `nonce`:
    the last 20 bytes of keccak(rlp([sender, nonce])) (the yellow paper, section 7)."""
    return to_checksum_address(keccak(rlp_encode([_address_bytes(sender, "sender"), _uint(nonce, "nonce", "")]))[12:])


# --------------------------------------------------------------------------------------------- transactions

#: bounds of the integer fields. nonce: EIP-2681 (at most 2^64 - 2, the account's nonce must still increment).
#: gas: clients hold a gas limit in 64 bits. chainId: EIP-155's v = 2 * chainId + 36 must fit in 64 bits as
#: clients hold it (the bound EIP-2294 proposes); 0 is no chain at all. Others: the EVM's 256-bit words.
_BOUNDS: dict[str, tuple[int, int]] = {
    "nonce": (0, 2 ** 64 - 2),
    "gas": (0, 2 ** 64 - 1),
    "chainId": (1, (2 ** 64 - 1 - 36) // 2),
    "value": (0, 2 ** 256 - 1),
    "gasPrice": (0, 2 ** 256 - 1),
    "maxFeePerGas": (0, 2 ** 256 - 1),
    "maxPriorityFeePerGas": (0, 2 ** 256 - 1),
}
_REQUIRED = ("nonce", "gas", "chainId")
_FIELDS = frozenset(_BOUNDS) | {"to", "data", "from"}


def _uint(value: Any, field: str, what: str = "transaction field ") -> int:
    """An int field of a transaction, in its bounds. Only int: a hex or decimal string is the caller's to
    convert, so that "10" can never be taken for 0x10."""
    low, high = _BOUNDS[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}{field!r} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what}{field!r} is {value}, outside {low}..{high}")
    return value


def _data_field(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        digits = value[2:]
        # fromhex alone would accept spaces between bytes
        if len(digits) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in digits):
            return bytes.fromhex(digits)
    raise ValueError("transaction field 'data' must be bytes or 0x and an even number of hex digits")


@dataclass(frozen=True)
class SignedTransaction:
    """A signed transaction as eth_account returns it: `raw_transaction` is what eth_sendRawTransaction takes,
    `hash` its keccak (the transaction hash), `v` the y-parity 0/1 for type 2 and EIP-155's v for legacy."""

    hash: bytes
    raw_transaction: bytes
    r: int
    s: int
    v: int


class Signer:
    """One private key: signs transactions and EIP-191 messages, knows its address.

    Immutable, so one instance may be shared between threads and callers. Its repr shows the address only, so
    a key never reaches a log line or a traceback through it."""

    __slots__ = ("_key", "_secret", "_address")

    def __init__(self, key: bytes) -> None:
        # the messages say what is wrong, never the bytes: they are, or are close to, a private key
        if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
            raise ValueError("a private key is 32 bytes")
        secret = int.from_bytes(key, "big")
        if not 1 <= secret < N:
            raise ValueError("a private key must be between 1 and the secp256k1 order - 1")
        self._key = bytes(key)
        self._secret = secret
        self._address = _address_of(secret)  # once: it costs a scalar multiplication

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def address(self) -> str:
        """The checksummed (EIP-55) address."""
        return self._address

    def __repr__(self) -> str:
        return f"Signer(address={self._address})"

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTransaction:
        """Sign a legacy (`gasPrice`, EIP-155) or EIP-1559 (`maxFeePerGas` + `maxPriorityFeePerGas`, type 2)
        transaction; byte for byte what eth_account's `sign_transaction` gives for the same dict.

        Fields: `nonce`, `gas`, `chainId` (required ints), `to` (absent, None or "" creates a contract),
        `value` (default 0), `data` (bytes or 0x hex, default empty), one kind of fees, and optionally `from`,
        which must be this signer's address. Anything else is a ValueError naming the field: a field this signer
        does not know (an access list, a type) would otherwise be silently left out of what is signed."""
        if not isinstance(tx, Mapping):
            raise ValueError(f"a transaction is a mapping of its fields, not {type(tx).__name__}")
        unknown = sorted(repr(name) for name in tx if name not in _FIELDS)
        if unknown:
            raise ValueError(f"transaction field {unknown[0]} is not one this signer knows "
                             "(nonce, gas, chainId, to, value, data, from, gasPrice or maxFeePerGas and "
                             "maxPriorityFeePerGas)")
        for name in _REQUIRED:
            if name not in tx:
                raise ValueError(f"transaction field {name!r} is missing")
        if "from" in tx:
            sender = tx["from"]
            if not isinstance(sender, str) or sender.lower() != self._address.lower():
                raise ValueError(f"transaction field 'from' is {sender!r}, not this signer's address {self._address}")
        legacy = "gasPrice" in tx
        dynamic = [name for name in ("maxFeePerGas", "maxPriorityFeePerGas") if name in tx]
        if legacy and dynamic:
            raise ValueError(f"transaction fields 'gasPrice' and {dynamic[0]!r} are two kinds of fees: give one")
        if not legacy and len(dynamic) < 2:
            missing = "maxPriorityFeePerGas" if dynamic == ["maxFeePerGas"] else "maxFeePerGas"
            raise ValueError(f"transaction field {missing!r} is missing (or give 'gasPrice' for a legacy one)")

        nonce = _uint(tx["nonce"], "nonce")
        gas = _uint(tx["gas"], "gas")
        chain_id = _uint(tx["chainId"], "chainId")
        value = _uint(tx.get("value", 0), "value")
        target = tx.get("to")
        to = b"" if target is None or target in ("", b"") else _address_bytes(target, "transaction field 'to'")
        data = _data_field(tx.get("data", b""))

        if legacy:
            fields: list[Any] = [nonce, _uint(tx["gasPrice"], "gasPrice"), gas, to, value, data]
            # EIP-155: the chain id and two empty fields are signed, so the signature is valid on that chain only
            recovery_id, r, s = _sign_digest(self._secret, keccak(rlp_encode([*fields, chain_id, 0, 0])))
            v = recovery_id + 35 + 2 * chain_id
            raw = rlp_encode([*fields, v, r, s])
        else:
            max_fee = _uint(tx["maxFeePerGas"], "maxFeePerGas")
            tip = _uint(tx["maxPriorityFeePerGas"], "maxPriorityFeePerGas")
            if tip > max_fee:  # EIP-1559 makes such a transaction invalid: refuse it here, where the field is known
                raise ValueError(f"transaction field 'maxPriorityFeePerGas' ({tip}) is above 'maxFeePerGas' "
                                 f"({max_fee})")
            fields = [chain_id, nonce, tip, max_fee, gas, to, value, data, []]  # [] : the empty access list
            # EIP-2718: the type byte prefixes both what is signed and what is sent
            recovery_id, r, s = _sign_digest(self._secret, keccak(b"\x02" + rlp_encode(fields)))
            v = recovery_id
            raw = b"\x02" + rlp_encode([*fields, recovery_id, r, s])
        return SignedTransaction(hash=keccak(raw), raw_transaction=raw, r=r, s=s, v=v)

    def sign_message(self, message: bytes) -> bytes:
        """EIP-191 version 0x45 ("personal_sign") signature of `message`: r (32 bytes) || s (32) || v (1, 27/28).

        The prefix with the length makes the signed digest one no transaction can have, so a signed message can
        never be replayed as a transaction."""
        if not isinstance(message, (bytes, bytearray)):
            raise TypeError(f"a message to sign is bytes, not {type(message).__name__}")
        digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode("ascii") + bytes(message))
        recovery_id, r, s = _sign_digest(self._secret, digest)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recovery_id])


# ------------------------------------------------------------------------------------------- BIP-39 / BIP-32

_HARDENED = 2 ** 31


def _parse_path(path: str) -> list[int]:
    """The indexes of a BIP-32 path "m/44'/60'/0'/0/3" (hardened with ' or h), hardened ones + 2^31."""
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or parts[0] != "m":
        raise ValueError(f"derivation path {path!r} does not start with m")
    indexes = []
    for part in parts[1:]:
        hardened = part.endswith(("'", "h", "H"))
        digits = part[:-1] if hardened else part
        if not (digits.isascii() and digits.isdigit()) or int(digits) >= _HARDENED:
            raise ValueError(f"derivation path {path!r}: {part!r} is not an index 0..2^31-1 (with ' if hardened)")
        indexes.append(int(digits) + (_HARDENED if hardened else 0))
    return indexes


def _compressed_public_key(secret: int) -> bytes:
    """SEC 1 compressed form of secret * G: 02 or 03 (y's parity), then x."""
    x, y = _multiply_g(secret)
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


def from_mnemonic(mnemonic: str, path: str) -> Signer:
    """The Signer of a BIP-39 mnemonic (empty passphrase) at BIP-32 path `path`, e.g. "m/44'/60'/0'/0/3".

    The mnemonic's word-list checksum is not checked: the hub derives only from the public development mnemonic
    (anvil's "test test test test test test test test test test test junk", whose accounts anvil funds), which
    is a constant in the code, so a typo cannot happen there; real hubs sign with a keystore (decrypt_keystore).
    Each derived key of 0 or >= N is invalid per BIP-32 (probability about 2^-127): a ValueError."""
    if not isinstance(mnemonic, str):
        raise ValueError("a mnemonic is a str")
    indexes = _parse_path(path)
    # BIP-39: PBKDF2-HMAC-SHA512, 2048 rounds, the NFKD mnemonic as password, "mnemonic" + passphrase as salt
    seed = hashlib.pbkdf2_hmac("sha512", unicodedata.normalize("NFKD", mnemonic).encode("utf-8"), b"mnemonic", 2048)
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    secret, chain_code = int.from_bytes(digest[:32], "big"), digest[32:]
    if not 1 <= secret < N:
        raise ValueError("this mnemonic gives an invalid BIP-32 master key")
    for index in indexes:
        if index >= _HARDENED:  # hardened: from the private key, so a child key cannot reveal its parent's
            data = b"\x00" + secret.to_bytes(32, "big") + index.to_bytes(4, "big")
        else:
            data = _compressed_public_key(secret) + index.to_bytes(4, "big")
        digest = hmac.new(chain_code, data, hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        secret = (tweak + secret) % N
        if tweak >= N or secret == 0:
            raise ValueError(f"derivation path {path!r} gives an invalid BIP-32 key at index {index}")
        chain_code = digest[32:]
    return Signer(secret.to_bytes(32, "big"))


# ------------------------------------------------------------------------------------ Web3 Secret Storage v3


class KeystoreError(DataError):
    """A keystore that does not give its key: not a valid v3 keystore, or the password does not open it.
    Messages never contain the password or the key."""


#: Limits on a keystore's KDF cost. A keystore is input, and a typo (n = 2^28) would make a hub run out of memory
#: or sit at start-up for hours; refused instead. 256 MiB is what geth's "standard" scrypt (n = 2^18, r = 8)
#: needs, the heaviest in common use; p = 1 is what geth, eth-keyfile and ethers write.
_SCRYPT_MAX_MEMORY = 256 * 2 ** 20
_SCRYPT_MAX_P = 16
_PBKDF2_MAX_ROUNDS = 10_000_000
#: v3 uses 32 derived bytes (the AES key and the MAC key); more would only cost time
_MAX_DKLEN = 64
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _invalid(reason: str) -> KeystoreError:
    return KeystoreError(f"not a valid keystore: {reason}")


def _member(obj: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise _invalid(f"{where}{name} is missing")
    return obj[name]


def _mapping(obj: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = _member(obj, name, where)
    if not isinstance(value, Mapping):
        raise _invalid(f"{where}{name} is not an object")
    return value


def _hex(obj: Mapping[str, Any], name: str, where: str, length: int | None = None) -> bytes:
    value = _member(obj, name, where)
    digits = value[2:] if isinstance(value, str) and value.startswith(("0x", "0X")) else value
    if not isinstance(digits, str) or len(digits) % 2 or not _HEX_DIGITS.issuperset(digits):
        raise _invalid(f"{where}{name} is not hex")
    raw = bytes.fromhex(digits)
    if length is not None and len(raw) != length:
        raise _invalid(f"{where}{name} is {len(raw)} bytes, not {length}")
    return raw


def _int(obj: Mapping[str, Any], name: str, where: str, low: int, high: int) -> int:
    value = _member(obj, name, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{where}{name} is not an integer")
    if not low <= value <= high:
        raise _invalid(f"{where}{name} is {value}, outside {low}..{high}")
    return value


def _name(obj: Mapping[str, Any], name: str, where: str, known: str) -> None:
    value = _member(obj, name, where)
    if value != known:
        shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
        raise _invalid(f"{where}{name} {shown} is not {known!r}, the one this hub reads")


def _derive(crypto: Mapping[str, Any], password: bytes) -> bytes:
    """The key the password derives by the keystore's KDF; parameters are all checked before any work."""
    kdf = _member(crypto, "kdf", "crypto.")
    params = _mapping(crypto, "kdfparams", "crypto.")
    where = "crypto.kdfparams."
    if kdf == "scrypt":
        n = _int(params, "n", where, 2, _SCRYPT_MAX_MEMORY // 128)
        if n & (n - 1):
            raise _invalid(f"{where}n is {n}, not a power of 2 (scrypt needs one)")
        r = _int(params, "r", where, 1, _SCRYPT_MAX_MEMORY // 128)
        p = _int(params, "p", where, 1, _SCRYPT_MAX_P)
        if 128 * r * n > _SCRYPT_MAX_MEMORY:
            raise _invalid(f"scrypt with n={n}, r={r} needs more than {_SCRYPT_MAX_MEMORY // 2 ** 20} MiB")
        dklen = _int(params, "dklen", where, 32, _MAX_DKLEN)
        salt = _hex(params, "salt", where)
        # OpenSSL refuses to run past maxmem (default 32 MiB, too little for n = 2^18): allow what these
        # parameters need, 128 * r * (n + p + 2) bytes, with room to spare
        maxmem = 2 * 128 * r * n + 128 * r * (p + 2)
        try:
            return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)
        except ValueError:
            raise _invalid("scrypt refused its parameters") from None
    if kdf == "pbkdf2":
        _name(params, "prf", where, "hmac-sha256")
        rounds = _int(params, "c", where, 1, _PBKDF2_MAX_ROUNDS)
        dklen = _int(params, "dklen", where, 32, _MAX_DKLEN)
        salt = _hex(params, "salt", where)
        return hashlib.pbkdf2_hmac("sha256", password, salt, rounds, dklen)
    shown = repr(kdf)[:40] if isinstance(kdf, str) else type(kdf).__name__
    raise _invalid(f"crypto.kdf {shown} is neither 'scrypt' nor 'pbkdf2'")


def decrypt_keystore(keystore: Mapping[str, Any], password: str) -> bytes:
    """The 32-byte private key in a Web3 Secret Storage v3 keystore (what geth, clef, eth_account write).

    KeystoreError("wrong password") when the MAC does not match (a wrong password, or a changed ciphertext:
    the two cannot be told apart); KeystoreError("not a valid keystore: ...") for anything malformed, never
    another exception. Everything is checked before the KDF runs, so a broken file fails fast."""
    if not isinstance(password, str):
        raise TypeError("a keystore password is a str")
    if not isinstance(keystore, Mapping):
        raise _invalid(f"a {type(keystore).__name__}, not an object")
    version = _member(keystore, "version", "")
    if isinstance(version, bool) or version != 3:
        raise _invalid("version is not 3")
    # geth wrote "Crypto" in early versions
    name = "Crypto" if "Crypto" in keystore and "crypto" not in keystore else "crypto"
    crypto = _mapping(keystore, name, "")
    _name(crypto, "cipher", "crypto.", "aes-128-ctr")
    iv = _hex(_mapping(crypto, "cipherparams", "crypto."), "iv", "crypto.cipherparams.", 16)
    ciphertext = _hex(crypto, "ciphertext", "crypto.", 32)
    mac = _hex(crypto, "mac", "crypto.", 32)
    derived = _derive(crypto, password.encode("utf-8"))
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), mac):
        raise KeystoreError("wrong password")
    from Crypto.Cipher import AES  # here only: the one module of the hub that needs AES, once at start-up

    return bytes(AES.new(derived[:16], AES.MODE_CTR, nonce=b"", initial_value=iv).decrypt(ciphertext))
