"""Proof of work: the C nonce search (against PyOTA's Curl-P-81), IRI's attach semantics, and the PyOTA adapter
used against a node that refuses attachToTangle."""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iota import Bundle, Iota, Transaction, TryteString
from iota.adapter import BadApiResponse, HttpAdapter
from iota.crypto.pycurl import Curl as PyotaCurl
from iota.transaction.validator import BundleValidator

from mam_client import pow as local_pow
from mam_client.crypto import _curl
from mam_client.crypto import trits as T
from mam_client.node import transaction as tx
from mam_client.node.server import RunningNode, serve_in_thread
from mam_client.node.settings import NodeSettings
from scb.errors import ConfigError, DataError
from tests.mam_client.node.helpers import prepared_bundle

ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def pyota_hash(trytes: str) -> list[int]:
    """Curl-P-81 of a transaction by PyOTA's pure-Python Curl: the independent reference."""
    curl = PyotaCurl()
    curl.absorb(TryteString(trytes.encode()).as_trits())
    out = [0] * 243
    curl.squeeze(out)
    return out


def random_tx(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(tx.TRANSACTION_TRYTES))


@pytest.mark.parametrize(("mwm", "threads"), [(0, 1), (1, 2), (5, 1), (7, 2), (9, 2)])
def test_pow_search_meets_mwm_by_pyota_curl(mwm: int, threads: int) -> None:
    rng = random.Random(mwm * 100 + threads)
    trytes = random_tx(rng)
    nonce, tried = _curl.pow_search(T.trits(trytes), mwm, threads)
    assert len(nonce) == 81 and tried >= 1
    result = trytes[:-27] + T.trytes(nonce)
    assert result[:-27] == trytes[:-27]  # only the nonce changed
    ref = pyota_hash(result)
    assert ref[243 - mwm:] == [0] * mwm
    assert tx.transaction_hash(result) == T.trytes(T.from_values(ref))
    assert tx.trailing_zero_trits(tx.transaction_hash(result)) >= mwm


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), mwm=st.integers(0, 6))
def test_pow_search_property(seed: int, mwm: int) -> None:
    trytes = random_tx(random.Random(seed))
    result, _ = local_pow.search_nonce(trytes, mwm, threads=2)
    assert tx.trailing_zero_trits(tx.transaction_hash(result)) >= mwm
    assert result[: tx.NONCE[0]] == trytes[: tx.NONCE[0]]


def test_nonce_layout_lane_thread_counter() -> None:
    """Lanes own nonce trits 0..4, the thread id trits 5..8, the counter trits 54..80: disjoint search spaces."""
    def digits(values: list[int]) -> int:
        return sum((v % 3) * 3**i for i, v in enumerate(values))  # trit -1 is digit 2, as the C DIGIT table

    for threads in (1, 3):
        for seed in range(4):
            trytes = random_tx(random.Random(seed))
            nonce, tried = _curl.pow_search(T.trits(trytes), 6, threads)
            v = T.values(nonce)
            assert digits(v[0:5]) < 128
            assert digits(v[5:9]) < threads
            assert v[9:54] == T.values(T.trits(trytes))[-81 + 9 : -81 + 54]  # the caller's trits stay
            assert v[54:81] != T.values(T.trits(trytes))[-27:]  # the counter moved on from the caller's value
            assert tried % 128 == 0


def test_cancel_stops_a_search_that_would_run_for_years() -> None:
    flag = local_pow.PowCancel()
    trits = T.trits(random_tx(random.Random(1)))
    result: list[tuple[object, int]] = []
    worker = threading.Thread(target=lambda: result.append(_curl.pow_search(trits, 60, 2, flag.flag)))
    started = time.monotonic()
    worker.start()
    time.sleep(0.3)
    flag.cancel()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert result[0][0] is None and result[0][1] > 0
    assert time.monotonic() - started < 5
    with pytest.raises(local_pow.PowInterrupted):
        local_pow.search_nonce(random_tx(random.Random(2)), 27, cancel=flag)  # already cancelled: stops at once


@pytest.mark.parametrize(
    "args",
    [
        (b"\x00" * 8018, 1, 1),
        (b"\x00" * 8019, -1, 1),
        (b"\x00" * 8019, 244, 1),
        (b"\x00" * 8019, 1, 0),
        (b"\x00" * 8019, 1, 65),
        (b"\x05" * 8019, 1, 1),
        (b"\x00" * 8019, 1, 1, bytearray()),
        (b"\x00" * 8019, 1, 1, b"\x00"),  # not writable
    ],
)
def test_pow_search_refuses_bad_arguments(args: tuple) -> None:
    with pytest.raises((ValueError, TypeError, BufferError)):
        _curl.pow_search(*args)


def test_attach_trytes_follows_iri() -> None:
    head_first = prepared_bundle(message="M" * 5000, tag="")  # 3 transactions, empty tag
    trunk, branch = "T" * 81, "B" * 81
    before = int(time.time() * 1000)
    out = local_pow.attach_trytes(head_first, trunk, branch, 4, threads=2)
    after = int(time.time() * 1000)
    chain = [tx.parse(t) for t in out]
    assert [t.current_index for t in chain] == [0, 1, 2]  # tail first, the reverse of the input
    head = chain[2]
    assert (head.trunk, head.branch) == (trunk, branch)
    assert (chain[1].trunk, chain[1].branch) == (head.hash, trunk)
    assert (chain[0].trunk, chain[0].branch) == (chain[1].hash, trunk)
    for t, original in zip(chain, reversed(head_first)):
        assert t.weight >= 4
        assert before <= t.attachment_timestamp <= after
        assert t.attachment_timestamp_lower == 0 and t.attachment_timestamp_upper == tx.MAX_TIMESTAMP_VALUE
        assert t.tag == t.obsolete_tag  # an all-9 tag takes the obsoleteTag, as IRI does
        assert t.trytes[: tx.TRUNK[0]] == original[: tx.TRUNK[0]]  # signature/essence/bundle untouched
    assert tx.check_bundle(chain) is None
    assert BundleValidator(Bundle([Transaction.from_tryte_string(t) for t in out])).is_valid()


@pytest.mark.parametrize(
    ("trytes", "trunk", "mwm", "match"),
    [
        ([], "T" * 81, 3, "no transaction"),
        (["A" * 10], "T" * 81, 3, "trytes\\[0\\]"),
        (None, "T" * 80, 3, "trunkTransaction"),
        (None, "T" * 81, 28, "minWeightMagnitude"),
        (None, "T" * 81, True, "minWeightMagnitude"),
    ],
)
def test_attach_trytes_refuses_bad_input(trytes: list[str] | None, trunk: str, mwm: int, match: str) -> None:
    with pytest.raises(DataError, match=match):
        local_pow.attach_trytes(trytes if trytes is not None else prepared_bundle(), trunk, "B" * 81, mwm)


@pytest.fixture(scope="module")
def refusing_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A node that refuses attachToTangle, like a public node: clients must do their own PoW."""
    settings_ = NodeSettings(db=tmp_path_factory.mktemp("pow") / "t.sqlite3", port=0, mwm=5, remote_pow=False)
    with serve_in_thread(settings_) as node:
        yield node


def test_pyota_send_trytes_with_local_pow_against_a_refusing_node(refusing_node: RunningNode) -> None:
    prepared = [TryteString(t.encode()) for t in prepared_bundle(message="LOCALPOW" * 400, address="L" * 81)]
    plain = Iota(refusing_node.url)
    with pytest.raises(BadApiResponse, match="401.*attachToTangle is not available"):
        plain.send_trytes(prepared, depth=3, min_weight_magnitude=5)

    api = Iota(local_pow.LocalPowAdapter(HttpAdapter(refusing_node.url), threads=2), local_pow=True)
    sent = api.send_trytes(prepared, depth=3, min_weight_magnitude=5)["trytes"]
    hashes = plain.find_transactions(addresses=["L" * 81])["hashes"]
    assert len(hashes) == len(sent) == 2
    found = plain.get_trytes(hashes)["trytes"]
    assert sorted(str(t) for t in found) == sorted(str(t) for t in sent)
    tail = tx.parse(str(sent[0]))
    assert tail.current_index == 0 and tail.weight >= 5
    assert plain.check_consistency([tail.hash])["state"] is True


def test_local_pow_adapter_interrupt(refusing_node: RunningNode) -> None:
    adapter = local_pow.LocalPowAdapter(refusing_node.url, threads=1)
    payload = {"command": "attachToTangle", "trunkTransaction": "9" * 81, "branchTransaction": "9" * 81,
               "minWeightMagnitude": 27, "trytes": prepared_bundle()}
    result: list[dict] = []
    worker = threading.Thread(target=lambda: result.append(adapter.send_request(payload)))
    worker.start()
    deadline = time.monotonic() + 30
    while worker.is_alive() and time.monotonic() < deadline:  # an interrupt only stops a running search
        time.sleep(0.2)
        assert adapter.send_request({"command": "interruptAttachingToTangle"}) == {"duration": 0}
        worker.join(timeout=0.3)
    assert not worker.is_alive()
    assert result and result[0]["trytes"] == []
    with pytest.raises(BadApiResponse, match="minWeightMagnitude"):
        adapter.send_request({**payload, "minWeightMagnitude": 99})
    # anything else goes to the node
    assert adapter.send_request({"command": "getNodeInfo"})["appName"] == "SCB tangle-node"


def test_make_adapter(tmp_path: Path) -> None:
    assert isinstance(local_pow.make_adapter("http://127.0.0.1:1", "local"), local_pow.LocalPowAdapter)
    assert isinstance(local_pow.make_adapter("http://127.0.0.1:1", "remote"), HttpAdapter)
    with pytest.raises(ConfigError):
        local_pow.make_adapter("http://127.0.0.1:1", "gpu")
