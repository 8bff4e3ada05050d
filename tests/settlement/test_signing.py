"""settlement.signing against eth_account 0.14, eth_keys and rlp (the references, imported here only): the same
raw transactions, hashes and signatures, the same development accounts, the same keys out of keystores; published
RFC 6979 and contract-address vectors as independent checks; malformed input refused; and the module importing
none of the libraries it exists to avoid."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import subprocess
import sys
import unicodedata
from typing import Any

import pytest
import rlp
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys import keys as ref_keys
from eth_keys.backends.native import ecdsa as ref_ecdsa
from eth_utils import keccak as ref_keccak
from eth_utils import to_checksum_address as ref_checksum

from settlement import signing
from settlement.signing import (
    KeystoreError,
    SignedTransaction,
    Signer,
    create_address,
    decrypt_keystore,
    from_mnemonic,
    rlp_encode,
)
from tests.conftest import REPO

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DEV_MNEMONIC = "test test test test test test test test test test test junk"
PASSWORD = "pässwörd horse battery"

Account.enable_unaudited_hdwallet_features()


def _key(number: int) -> bytes:
    return number.to_bytes(32, "big")


_rng = random.Random(20240607)
KEYS = [_key(1), _key(2), _key(N - 1), *(_rng.randbytes(32) for _ in range(3))]
CHAIN_IDS = [1, 31337, (2 ** 64 - 1 - 36) // 2]  # the last: the largest chain id the module accepts
TARGET = ref_checksum("0x" + _rng.randbytes(20).hex())


def _fees(kind: str, rng: random.Random) -> dict[str, int]:
    if kind == "legacy":
        return {"gasPrice": rng.choice([0, 1, 10 ** 9, 2 ** 256 - 1])}
    tip = rng.choice([0, 1, 10 ** 9])
    return {"maxPriorityFeePerGas": tip, "maxFeePerGas": tip + rng.choice([0, 1, 30 * 10 ** 9, 2 ** 200])}


def _cases() -> list[tuple[bytes, dict[str, Any]]]:
    rng = random.Random(7)
    cases = []
    for key_index, key in enumerate(KEYS):
        for chain_id in CHAIN_IDS:
            for kind in ("legacy", "dynamic"):
                tx: dict[str, Any] = {
                    "nonce": rng.choice([0, 1, 127, 128, 2 ** 64 - 2]),
                    "gas": rng.choice([21_000, 3_000_000, 2 ** 64 - 1]),
                    "chainId": chain_id,
                    **_fees(kind, rng),
                }
                # cycle the shape: contract creation (to absent, None, "") and calls; data and value or not
                shape = (key_index + CHAIN_IDS.index(chain_id) + len(kind)) % 5
                if shape == 1:
                    tx["to"] = None
                elif shape == 2:
                    tx["to"] = ""
                elif shape >= 3:
                    tx["to"] = TARGET
                if shape != 4:
                    tx["data"] = rng.choice([b"", b"\x00", b"\x7f", b"\x80", rng.randbytes(55), rng.randbytes(300)])
                    if rng.random() < 0.5:
                        tx["data"] = "0x" + tx["data"].hex()
                if shape != 0:
                    tx["value"] = rng.choice([0, 1, 10 ** 18, 2 ** 256 - 1])
                cases.append((key, tx))
    return cases


CASES = _cases()


def _same(signed: SignedTransaction, ref: Any) -> None:
    assert signed.raw_transaction == bytes(ref.raw_transaction)
    assert signed.hash == bytes(ref.hash)
    assert (signed.r, signed.s, signed.v) == (ref.r, ref.s, ref.v)


@pytest.mark.parametrize("key,tx", CASES, ids=[f"{i}-{'legacy' if 'gasPrice' in tx else 'type2'}"
                                               for i, (_, tx) in enumerate(CASES)])
def test_sign_transaction_matches_eth_account(key: bytes, tx: dict[str, Any]) -> None:
    _same(Signer(key).sign_transaction(tx), Account.from_key(key).sign_transaction(tx))


def test_cases_cover_both_kinds_creation_and_calls() -> None:
    # the matrix above is only worth something if it holds each shape
    kinds = {("gasPrice" in tx, tx.get("to") or None, "data" in tx, "value" in tx) for _, tx in CASES}
    assert {legacy for legacy, *_ in kinds} == {True, False}
    assert {to for _, to, _, _ in kinds} == {None, TARGET}
    assert {has for *_, has, _ in kinds} == {True, False}
    assert {has for *_, has in kinds} == {True, False}


def test_from_and_lowercase_to() -> None:
    key = KEYS[3]
    signer = Signer(key)
    tx = {"nonce": 5, "gas": 50_000, "chainId": 31337, "maxFeePerGas": 10, "maxPriorityFeePerGas": 2, "to": TARGET,
          "value": 3, "data": b"\x01\x02"}
    reference = Account.from_key(key).sign_transaction(tx)
    _same(signer.sign_transaction({**tx, "from": signer.address.lower()}), reference)
    _same(signer.sign_transaction({**tx, "from": signer.address.upper().replace("0X", "0x")}), reference)
    # eth_account refuses an address without checksum; EIP-55 makes all-lower hex a valid (unchecked) address
    _same(signer.sign_transaction({**tx, "to": TARGET.lower()}), reference)


@pytest.mark.parametrize("index", [0, 5, 11, 22, len(CASES) - 1])
def test_signatures_recover_to_the_signer(index: int) -> None:
    key, tx = CASES[index]
    signer = Signer(key)
    assert Account.recover_transaction(signer.sign_transaction(tx).raw_transaction) == signer.address


@pytest.mark.parametrize("message", [b"", b"hello", b"\x19Ethereum", bytes(range(256)) * 4,
                                     random.Random(3).randbytes(32)])
@pytest.mark.parametrize("key", KEYS[:4])
def test_sign_message_matches_eth_account(key: bytes, message: bytes) -> None:
    expected = Account.from_key(key).sign_message(encode_defunct(primitive=message)).signature
    signature = Signer(key).sign_message(message)
    assert signature == bytes(expected)
    assert Account.recover_message(encode_defunct(primitive=message), signature=signature) == Signer(key).address


def test_sign_message_refuses_text() -> None:
    with pytest.raises(TypeError):
        Signer(KEYS[0]).sign_message("hello")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ ECDSA core

#: RFC 6979 (HMAC-SHA256) nonces and signatures on secp256k1 of sha256(message), as published with
#: python-ecdsa and trezor-crypto's test suites (RFC 6979 itself has no secp256k1 vectors)
RFC6979_VECTORS = [
    (1, b"Satoshi Nakamoto", 0x8F8A276C19F4149656B280621E358CCE24F5F52542772691EE69063B74F15D15),
    (1, b"All those moments will be lost in time, like tears in rain. Time to die...",
     0x38AA22D72376B4DBC472E06C3BA403EE0A394DA63FC58D88686C611ABA98D6B3),
    (N - 1, b"Satoshi Nakamoto", 0x33A19B60E25FB6F4435AF53A3D42D493644827367E6453928554F43E49AA6F90),
    (0xF8B8AF8CE3C7CCA5E300D33939540C10D45CE001B8F252BFBC57BA0342904181, b"Alan Turing",
     0x525A82B70E67874398067543FD84C83D30C175FDC45FDEEE082FE13B1D7CFDF1),
]


@pytest.mark.parametrize("secret,message,k", RFC6979_VECTORS)
def test_rfc6979_vectors(secret: int, message: bytes, k: int) -> None:
    digest = hashlib.sha256(message).digest()
    assert next(signing._rfc6979_k(secret, digest)) == k
    # r is the x of k*G (eth_keys computes the point), and the signature verifies under eth_keys
    recovery_id, r, s = signing._sign_digest(secret, digest)
    assert r == int.from_bytes(ref_keys.PrivateKey(_key(k)).public_key.to_bytes()[:32], "big")
    assert s <= N // 2
    public = ref_keys.PrivateKey(_key(secret)).public_key
    assert ref_keys.Signature(vrs=(recovery_id, r, s)).recover_public_key_from_msg_hash(digest) == public


def test_published_signature() -> None:
    # key 1, sha256("Satoshi Nakamoto"): the low-s signature of the same published vector set
    _, r, s = signing._sign_digest(1, hashlib.sha256(b"Satoshi Nakamoto").digest())
    assert r == 0x934B1EA10A4B3C1757E2B0C017D0B6143CE3C9A7E6A4A49860D7A6AB210EE3D8
    assert s == 0x2442CE9D2B916064108014783E923EC36B49743E2FFA1C4496F01A512AAFD9E5


@pytest.mark.parametrize("digest", [_key(N), _key(N + 5), b"\xff" * 32, bytes(32)])
def test_digests_at_and_above_the_order(digest: bytes) -> None:
    # RFC 6979 reduces the digest mod N before it keys the HMAC; eth_keys 0.8 does the same
    key = KEYS[4]
    assert signing._sign_digest(int.from_bytes(key, "big"), digest) == ref_ecdsa.ecdsa_raw_sign(digest, key)


def _rfc6979_second_k(secret: int, digest: bytes) -> int:
    """The second RFC 6979 candidate, step h.3 spelled out from the RFC (HMAC-SHA256, qlen 256)."""
    x, h = _key(secret), _key(int.from_bytes(digest, "big") % N)
    v, k = b"\x01" * 32, b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()  # the first candidate, refused by the caller
    k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    return int.from_bytes(hmac.new(k, v, hashlib.sha256).digest(), "big")


def test_r_x_at_or_above_the_order_takes_the_next_k(monkeypatch: pytest.MonkeyPatch) -> None:
    # R.x >= N happens with probability ~2^-128, so the first point is faked: the signer must move on to RFC
    # 6979's next candidate (Ethereum's v cannot carry the recovery id + 2 that r = R.x - N would need)
    real = signing._multiply_g
    calls: list[int] = []

    def first_point_too_far(scalar: int) -> tuple[int, int]:
        calls.append(scalar)
        return (N + 1, 2) if len(calls) == 1 else real(scalar)

    monkeypatch.setattr(signing, "_multiply_g", first_point_too_far)
    secret, digest = int.from_bytes(KEYS[5], "big"), hashlib.sha256(b"retry").digest()
    recovery_id, r, s = signing._sign_digest(secret, digest)
    second = _rfc6979_second_k(secret, digest)
    assert calls == [next(signing._rfc6979_k(secret, digest)), second]
    assert r == int.from_bytes(ref_keys.PrivateKey(_key(second)).public_key.to_bytes()[:32], "big")
    public = ref_keys.PrivateKey(KEYS[5]).public_key
    assert ref_keys.Signature(vrs=(recovery_id, r, s)).recover_public_key_from_msg_hash(digest) == public


def _affine(point: tuple[int, int, int]) -> tuple[int, int]:
    x, y, z = point
    p = signing.P
    return x * pow(z, -2, p) % p, y * pow(z, -3, p) % p


def test_addition_of_a_point_to_itself_and_to_its_negation() -> None:
    # never reached by a scalar multiplication below N, so checked here: G + G is 2G (eth_keys' public key of 2),
    # G + (-G) is infinity
    gx, gy = signing._GX, signing._GY
    two_g = ref_keys.PrivateKey(_key(2)).public_key.to_bytes()
    assert _affine(signing._add_affine((gx, gy, 1), gx, gy)) == (int.from_bytes(two_g[:32], "big"),
                                                                   int.from_bytes(two_g[32:], "big"))
    assert signing._add_affine((gx, gy, 1), gx, signing.P - gy)[2] == 0


# ------------------------------------------------------------------------------------------------------- RLP

RLP_ITEMS: list[Any] = [
    b"", 0, 1, 127, 128, 255, 256, 1024, 2 ** 64, 2 ** 256 - 1, b"\x00", b"\x7f", b"\x80", b"dog",
    b"x" * 55, b"x" * 56, b"y" * 1024, b"z" * 70_000,
    [], [[]], [[], [[]], [[], [[]]]], [b"cat", b"dog"], [b"a"] * 55, [b"a"] * 56, [b"abc"] * 1000,
    [0, 1, [b"", [2 ** 70, [b"\x00" * 60]]], bytearray(b"ba")], (b"tuple", 3),
]


@pytest.mark.parametrize("item", RLP_ITEMS, ids=[f"item{i}" for i in range(len(RLP_ITEMS))])
def test_rlp_matches_pyrlp(item: Any) -> None:
    reference = rlp.encode(bytes(item) if isinstance(item, bytearray) else item)
    assert rlp_encode(item) == reference


def test_rlp_long_form_boundary() -> None:
    # spelled out: 55 bytes take a one-byte header, 56 the long form with the length's length
    assert rlp_encode(b"x" * 55)[:1] == bytes([0x80 + 55])
    assert rlp_encode(b"x" * 56)[:2] == bytes([0xB8, 56])
    assert rlp_encode([b"a"] * 56)[:2] == bytes([0xF8, 56])


@pytest.mark.parametrize("item,error", [(-1, ValueError), ([1, -5], ValueError), ("text", TypeError),
                                        (True, TypeError), (1.5, TypeError), ([None], TypeError)])
def test_rlp_refuses(item: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        rlp_encode(item)


# ------------------------------------------------------------------------------------------ create_address


@pytest.mark.parametrize("nonce,expected", [
    # the well-known mainnet example (ethereum.stackexchange "How is the address of an Ethereum contract computed")
    (0, "0xcd234a471b72ba2f1ccf0a70fcaba648a5eecd8d"),
    (1, "0x343c43a37d37dff08ae8c4a11544c718abb4fcf8"),
    (2, "0xf778b86fa74e846c4f0a1fbd1335fe81c00a0c91"),
    (3, "0xfffd933a0bc612844eaf0c6fe3e5b8e9b6c1d19c"),
])
def test_create_address_mainnet_vector(nonce: int, expected: str) -> None:
    assert create_address("0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0", nonce) == ref_checksum(expected)


@pytest.mark.parametrize("nonce", [0, 1, 127, 128, 255, 256, 2 ** 32, 2 ** 64 - 2])
def test_create_address_matches_reference(nonce: int) -> None:
    sender = ref_checksum("0x" + random.Random(nonce).randbytes(20).hex())
    expected = ref_checksum(ref_keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])
    assert create_address(sender, nonce) == expected
    assert create_address(sender.lower(), nonce) == expected


@pytest.mark.parametrize("sender,nonce", [("0x1234", 0), (TARGET, -1), (TARGET, "1"),
                                          (TARGET[:2] + TARGET[2:].swapcase(), 0)])
def test_create_address_refuses(sender: str, nonce: Any) -> None:
    assert TARGET[2:] not in (TARGET[2:].lower(), TARGET[2:].upper())  # so its swapped case is a wrong checksum
    with pytest.raises(ValueError):
        create_address(sender, nonce)


# ---------------------------------------------------------------------------------------------------- BIP-39/32


@pytest.mark.parametrize("index", range(10))
def test_dev_accounts_match_eth_account(index: int) -> None:
    path = f"m/44'/60'/0'/0/{index}"
    expected = Account.from_mnemonic(DEV_MNEMONIC, account_path=path)
    signer = from_mnemonic(DEV_MNEMONIC, path)
    assert signer.key == bytes(expected.key)
    assert signer.address == expected.address


def test_anvil_account_zero() -> None:
    # independent of eth_account: anvil's (and hardhat's) published first development account
    signer = from_mnemonic(DEV_MNEMONIC, "m/44'/60'/0'/0/0")
    assert signer.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert signer.key.hex() == "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@pytest.mark.parametrize("path", ["m", "m/0", "m/0'/1/2'/2/1000000000", "m/2147483647'/2147483647"])
def test_other_paths_match_eth_account(path: str) -> None:
    assert from_mnemonic(DEV_MNEMONIC, path).key == bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=path).key)


def test_hardened_notations_and_nfkd() -> None:
    assert from_mnemonic(DEV_MNEMONIC, "m/44h/60H/0'/0/1").key == from_mnemonic(DEV_MNEMONIC, "m/44'/60'/0'/0/1").key
    composed, decomposed = "caf\u00e9 " * 11 + "x", unicodedata.normalize("NFD", "caf\u00e9 " * 11 + "x")
    assert composed != decomposed
    assert from_mnemonic(composed, "m/0").key == from_mnemonic(decomposed, "m/0").key


@pytest.mark.parametrize("path", ["", "44'/60'", "M/0", "m/", "m//1", "m/x", "m/-1", "m/2147483648", "m/1''",
                                  "m/\u0661"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(ValueError):
        from_mnemonic(DEV_MNEMONIC, path)


# ---------------------------------------------------------------------------------------------------- keystores

SECRET = KEYS[4]


@pytest.fixture(scope="module")
def pbkdf2_keystore() -> dict[str, Any]:
    return dict(Account.encrypt(SECRET, PASSWORD, kdf="pbkdf2", iterations=1000))


@pytest.fixture(scope="module")
def scrypt_keystore() -> dict[str, Any]:
    return dict(Account.encrypt(SECRET, PASSWORD, kdf="scrypt", iterations=2 ** 4))


def test_keystores_give_the_key(pbkdf2_keystore: dict[str, Any], scrypt_keystore: dict[str, Any]) -> None:
    assert decrypt_keystore(pbkdf2_keystore, PASSWORD) == SECRET
    assert decrypt_keystore(scrypt_keystore, PASSWORD) == SECRET
    # geth's early files spell it "Crypto"
    old = {k: v for k, v in scrypt_keystore.items() if k != "crypto"} | {"Crypto": scrypt_keystore["crypto"]}
    assert decrypt_keystore(old, PASSWORD) == SECRET
    assert decrypt_keystore(json.loads(json.dumps(pbkdf2_keystore)), PASSWORD) == SECRET


@pytest.mark.slow
def test_standard_scrypt_keystore() -> None:
    # geth's "standard" n = 2^18, r = 8 needs 256 MiB: more than hashlib.scrypt's default maxmem allows
    keystore = Account.encrypt(KEYS[5], PASSWORD, kdf="scrypt")
    assert keystore["crypto"]["kdfparams"]["n"] == 2 ** 18
    assert decrypt_keystore(keystore, PASSWORD) == KEYS[5]


def test_wrong_password(pbkdf2_keystore: dict[str, Any], scrypt_keystore: dict[str, Any]) -> None:
    for keystore in (pbkdf2_keystore, scrypt_keystore):
        with pytest.raises(KeystoreError, match="^wrong password$"):
            decrypt_keystore(keystore, PASSWORD + "!")


def test_tampered_ciphertext(pbkdf2_keystore: dict[str, Any]) -> None:
    tampered = copy.deepcopy(pbkdf2_keystore)
    text = tampered["crypto"]["ciphertext"]
    tampered["crypto"]["ciphertext"] = ("1" if text[0] == "0" else "0") + text[1:]
    with pytest.raises(KeystoreError, match="^wrong password$"):
        decrypt_keystore(tampered, PASSWORD)


def _paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, value in tree.items():
        out.append((*prefix, name))
        if isinstance(value, dict):
            out += _paths(value, (*prefix, name))
    return out


_OPTIONAL = {("address",), ("id",)}  # informative only: the key does not depend on them


def _without(keystore: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(keystore)
    node = out
    for name in path[:-1]:
        node = node[name]
    del node[path[-1]]
    return out


def _with(keystore: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(keystore)
    node = out
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return out


def _refused(keystore: Any) -> str:
    with pytest.raises(KeystoreError) as caught:
        decrypt_keystore(keystore, PASSWORD)
    message = str(caught.value)
    assert PASSWORD not in message and SECRET.hex() not in message
    return message


def test_each_missing_field(pbkdf2_keystore: dict[str, Any], scrypt_keystore: dict[str, Any]) -> None:
    checked = 0
    for keystore in (pbkdf2_keystore, scrypt_keystore):
        for path in _paths(keystore):
            if path in _OPTIONAL:
                continue
            message = _refused(_without(keystore, path))
            assert message.startswith("not a valid keystore: ") and path[-1] in message
            checked += 1
    assert checked >= 20  # version, crypto and its 6 fields, cipherparams.iv, 4 + 5 kdfparams, twice


@pytest.mark.parametrize("path,value", [
    (("version",), 2), (("version",), "3"), (("version",), True),
    (("crypto",), "text"), (("crypto", "kdf"), "argon2id"), (("crypto", "kdf"), 7),
    (("crypto", "cipher"), "aes-128-cbc"), (("crypto", "cipher"), None),
    (("crypto", "kdfparams", "prf"), "hmac-sha512"), (("crypto", "kdfparams", "salt"), "zz" * 16),
    (("crypto", "kdfparams", "salt"), 12), (("crypto", "kdfparams", "salt"), "abc"),
    (("crypto", "kdfparams", "c"), "1000"), (("crypto", "kdfparams", "c"), 0), (("crypto", "kdfparams", "c"), 10 ** 9),
    (("crypto", "kdfparams", "dklen"), 16), (("crypto", "kdfparams", "dklen"), 32.0),
    (("crypto", "kdfparams"), [1, 2]),
    (("crypto", "cipherparams"), "iv"), (("crypto", "cipherparams", "iv"), "00" * 8),
    (("crypto", "cipherparams", "iv"), "0 " * 16),
    (("crypto", "ciphertext"), "00" * 31), (("crypto", "ciphertext"), "gg" * 32),
    (("crypto", "mac"), "00" * 33), (("crypto", "mac"), None),
])
def test_malformed_pbkdf2_keystores(pbkdf2_keystore: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    assert _refused(_with(pbkdf2_keystore, path, value)).startswith("not a valid keystore: ")


@pytest.mark.parametrize("name,value", [
    ("n", 3), ("n", 1), ("n", 2 ** 30), ("n", "16"), ("r", 0), ("r", 2 ** 40), ("p", 0), ("p", 1000),
    ("salt", "xyz1"), ("dklen", 1024),
])
def test_malformed_scrypt_keystores(scrypt_keystore: dict[str, Any], name: str, value: Any) -> None:
    # the huge ones must be refused before scrypt runs (this test would otherwise take minutes or all memory)
    assert _refused(_with(scrypt_keystore, ("crypto", "kdfparams", name), value)).startswith("not a valid keystore: ")


@pytest.mark.parametrize("n,reason", [(3, "not a power of 2"), (2 ** 19, "more than 256 MiB")])
def test_scrypt_refusals_say_why(scrypt_keystore: dict[str, Any], n: int, reason: str) -> None:
    # refused by the module's own checks, not by whatever OpenSSL makes of them (2^19 * r 8 is 512 MiB of memory)
    assert reason in _refused(_with(scrypt_keystore, ("crypto", "kdfparams", "n"), n))


@pytest.mark.parametrize("keystore", [[], "{}", None, 3, {}])
def test_not_a_keystore(keystore: Any) -> None:
    assert _refused(keystore).startswith("not a valid keystore: ")


def test_keystore_error_is_a_data_error() -> None:
    from scb.errors import DataError

    assert issubclass(KeystoreError, DataError)


# --------------------------------------------------------------------------------------------- refused input

BASE_TX: dict[str, Any] = {"nonce": 0, "gas": 21_000, "chainId": 1, "maxFeePerGas": 2, "maxPriorityFeePerGas": 1}


@pytest.mark.parametrize("change,field", [
    ({"chainId": None}, "chainId"), ({"nonce": None}, "nonce"), ({"gas": None}, "gas"),
    ({"gasPrice": 1}, "gasPrice"), ({"maxFeePerGas": None, "maxPriorityFeePerGas": None}, "maxFeePerGas"),
    ({"maxPriorityFeePerGas": None}, "maxPriorityFeePerGas"), ({"maxFeePerGas": None}, "maxFeePerGas"),
    ({"type": 2}, "type"), ({"accessList": []}, "accessList"), ({"input": "0x"}, "input"),
    ({"from": TARGET}, "from"), ({"from": 5}, "from"),
    ({"nonce": "0x1"}, "nonce"), ({"nonce": True}, "nonce"), ({"nonce": 2 ** 64 - 1}, "nonce"),
    ({"value": -1}, "value"), ({"chainId": 0}, "chainId"), ({"gas": 1.0}, "gas"),
    ({"maxPriorityFeePerGas": 3}, "maxPriorityFeePerGas"),
    ({"data": "1234"}, "data"), ({"data": "0x123"}, "data"), ({"data": "0x12 34"}, "data"), ({"data": 5}, "data"),
    ({"to": "0x1234"}, "to"), ({"to": TARGET[:2] + TARGET[2:].swapcase()}, "to"), ({"to": 0}, "to"),
])
def test_invalid_transactions(change: dict[str, Any], field: str) -> None:
    tx = {**BASE_TX, **change}
    tx = {name: value for name, value in tx.items() if value is not None or name == "to"}
    with pytest.raises(ValueError, match=f"'{field}'"):
        Signer(KEYS[0]).sign_transaction(tx)


def test_not_a_mapping() -> None:
    with pytest.raises(ValueError):
        Signer(KEYS[0]).sign_transaction([("nonce", 0)])  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [_key(0), _key(N), _key(2 ** 256 - 1), _key(1)[1:], b"\x01" * 33, "11" * 32,
                                 1, None])
def test_invalid_keys(key: Any) -> None:
    with pytest.raises(ValueError) as caught:
        Signer(key)
    if isinstance(key, bytes):
        assert key.hex() not in str(caught.value) and key.hex()[-8:] not in str(caught.value)


def test_repr_shows_the_address_only() -> None:
    signer = Signer(KEYS[3])
    for shown in (repr(signer), str(signer), f"{signer}", repr([signer])):
        assert KEYS[3].hex() not in shown.lower()
        assert signer.address in shown
    assert signer.address == Account.from_key(KEYS[3]).address
    with pytest.raises(AttributeError):
        signer.key = KEYS[0]  # type: ignore[misc]


# ------------------------------------------------------------------------------------------- memory contract

_HEAVY = ("eth_utils", "eth_account", "eth_keys", "rlp", "pydantic", "web3")

_PROBE = """
import json, sys
from settlement import signing
signer = signing.from_mnemonic("test test test test test test test test test test test junk", "m/44'/60'/0'/0/0")
signer.sign_transaction({"nonce": 0, "gas": 21000, "chainId": 1, "gasPrice": 1, "to": signer.address})
signer.sign_message(b"hello")
keystore, password = json.loads(sys.stdin.read())
assert signing.decrypt_keystore(keystore, password) == bytes(32)[:31] + b"\\x07"
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in %r)))
""" % (_HEAVY,)


def test_import_loads_none_of_the_heavy_libraries() -> None:
    keystore = Account.encrypt(_key(7), PASSWORD, kdf="pbkdf2", iterations=10)
    proc = subprocess.run([sys.executable, "-c", _PROBE], input=json.dumps([keystore, PASSWORD]), text=True,
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []
