"""The transaction layout and bundle checks against PyOTA's own parser and bundle validator."""
from __future__ import annotations

import random
from unittest import mock

import pytest
from iota import Bundle, Transaction
from iota.transaction.validator import BundleValidator

from mam_client.node import transaction as tx
from tests.mam_client.node.helpers import attached_bundle, prepared_bundle

ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.fixture(scope="module")
def bundle() -> list[str]:
    return attached_bundle(2, trunk="A" * 81, branch="B" * 81, message="MSG" * 1500, tag="TAGSCB")


def test_fields_and_hash_match_pyota(bundle: list[str]) -> None:
    assert len(bundle) == 3
    for trytes in bundle:
        ours = tx.parse(trytes)
        ref = Transaction.from_tryte_string(trytes)
        assert ours.hash == str(ref.hash)
        assert ours.address == str(ref.address)
        assert ours.value == ref.value
        assert ours.bundle == str(ref.bundle_hash)
        assert ours.trunk == str(ref.trunk_transaction_hash)
        assert ours.branch == str(ref.branch_transaction_hash)
        assert ours.tag == str(ref.tag)
        assert ours.obsolete_tag == str(ref.legacy_tag)
        assert (ours.timestamp, ours.current_index, ours.last_index) == (
            ref.timestamp, ref.current_index, ref.last_index)
        assert ours.attachment_timestamp == ref.attachment_timestamp
        assert ours.attachment_timestamp_upper == ref.attachment_timestamp_upper_bound == tx.MAX_TIMESTAMP_VALUE
        assert ours.nonce == str(ref.nonce)


def test_bundle_checks_agree_with_pyota(bundle: list[str]) -> None:
    chain = [tx.parse(t) for t in bundle]
    assert tx.check_bundle(chain) is None
    assert tx.bundle_hash(chain) == chain[0].bundle
    assert BundleValidator(Bundle([Transaction.from_tryte_string(t) for t in bundle])).is_valid()


def test_tampered_essence_breaks_the_bundle_hash() -> None:
    head_first = prepared_bundle(message="X" * 3000)
    head_first[0] = tx.with_field(head_first[0], tx.OBSOLETE_TAG, "EVIL".ljust(27, "9"))
    chain = [tx.parse(t) for t in tx_attach(head_first)]
    assert "Kerl" in (tx.check_bundle(chain) or "")
    # (PyOTA's BundleValidator does not recompute the bundle hash, so it has nothing to say here)


def tx_attach(head_first: list[str]) -> list[str]:
    from mam_client.pow import attach_trytes

    return attach_trytes(head_first, tx.NULL_HASH, tx.NULL_HASH, 1, threads=1)


@pytest.mark.parametrize("case", ["missing", "order", "last_index", "foreign"])
def test_index_and_membership_errors(bundle: list[str], case: str) -> None:
    chain = [tx.parse(t) for t in bundle]
    if case == "missing":
        bad, expect = chain[:2], "lastIndex 2"
    elif case == "order":
        bad, expect = [chain[0], chain[2], chain[1]], "currentIndex"
    elif case == "last_index":
        t1 = tx.parse(tx.with_field(chain[1].trytes, tx.LAST_INDEX, tx.int_trytes(5, 9)))
        bad, expect = [chain[0], t1, chain[2]], "lastIndex 5"
    else:
        other = tx.parse(attached_bundle(1, message="OTHER" * 500)[1])
        bad, expect = [chain[0], other, chain[2]], "another bundle"
    assert expect in (tx.check_bundle(bad) or "")


@pytest.mark.parametrize("value", ["A" * 2672, "A" * 2674, "a" * 2673, "A" * 2672 + "!", 7, None])
def test_parse_refuses_malformed_trytes(value: object) -> None:
    with pytest.raises(tx.TransactionFormatError):
        tx.parse(value)


def test_trailing_zero_trits_and_int_fields() -> None:
    assert tx.trailing_zero_trits("A" + "9" * 80) == 242
    assert tx.trailing_zero_trits("9" * 80 + "A") == 2  # A = (1, 0, 0): two zero trits at the end
    assert tx.trailing_zero_trits("9" * 80 + "M") == 0
    for value in (0, 1, -1, 13, 1_600_000_000_000, tx.MAX_TIMESTAMP_VALUE):
        assert tx.tryte_int(tx.int_trytes(value, 9)) == value


def test_kerl_matches_pyota_on_several_chunks() -> None:
    from iota.crypto.kerl import Kerl

    from mam_client.crypto import trits as T

    rng = random.Random(16)
    for chunks in (1, 2, 7):
        data = "".join(rng.choice(ALPHABET) for _ in range(81 * chunks))
        kerl = Kerl()
        kerl.absorb(T.values(T.trits(data)))
        out = [0] * 243
        kerl.squeeze(out)
        assert tx.kerl_trytes(data) == T.trytes(T.from_values(out))


@pytest.mark.parametrize("size", [1, 2187, 2188, 31000])
def test_zero_value_bundle_is_what_pyota_prepares(size: int) -> None:
    """Byte for byte PyOTA's prepare_transfer (insecure bundle hashes re-tried through the tail's obsoleteTag)
    for the same timestamp: one fragment, exactly one, one more than one, and a publish window's message."""
    from iota import Address, Iota, ProposedTransaction, Tag, TryteString

    rng = random.Random(size)
    address = "".join(rng.choice(ALPHABET) for _ in range(80)) + "9"
    message = "".join(rng.choice(ALPHABET) for _ in range(size))
    with mock.patch("iota.transaction.creation.get_current_timestamp", return_value=1_764_650_000):
        expected = Iota("http://node.invalid:14265").prepare_transfer(transfers=[ProposedTransaction(
            address=Address(address), value=0, tag=Tag("SCB"), message=TryteString(message))])["trytes"]
    made = tx.zero_value_bundle(address, message, "SCB", 1_764_650_000)
    assert made == [str(t) for t in expected]
    assert len(made) == -(-size // 2187)
