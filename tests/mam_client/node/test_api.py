"""The node's IRI HTTP API over real HTTP: commands, IRI error shapes, limits, and no 500 for any bad input."""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mam_client.node import transaction as tx
from mam_client.node.server import RunningNode, serve_in_thread
from mam_client.node.settings import NodeSettings
from mam_client.pow import attach_trytes
from tests.mam_client.node.conftest import TEST_MWM
from tests.mam_client.node.helpers import HEADERS, attached_bundle, call, ok, prepared_bundle
from tests.raw_http import BODY_CASES, assert_no_traceback, malformed_requests, send_raw


def refused(url: str, payload: Any = None, status: int = 400, **kwargs: Any) -> str:
    code, body = call(url, payload, **kwargs)
    assert code == status, body
    assert set(body) <= {"error", "duration"} and isinstance(body["error"], str), body
    assert "Traceback" not in body["error"]
    return body["error"]


def test_get_node_info(node: RunningNode) -> None:
    info = ok(node.url, {"command": "getNodeInfo"})
    assert info["appName"] == "SCB tangle-node"
    assert info["latestMilestone"] == tx.NULL_HASH and info["latestSolidSubtangleMilestoneIndex"] == 0
    assert info["minWeightMagnitude"] == TEST_MWM
    assert "RemotePOW" in info["features"]
    assert isinstance(info["duration"], int)


def test_store_get_find_round_trip(node: RunningNode) -> None:
    bundle = attached_bundle(TEST_MWM, address="RT" + "9" * 79, message="ROUNDTRIP" * 300, tag="ROUND")
    assert set(ok(node.url, {"command": "storeTransactions", "trytes": bundle})) == {"duration"}
    ok(node.url, {"command": "broadcastTransactions", "trytes": bundle})
    hashes = [tx.parse(t).hash for t in bundle]
    assert ok(node.url, {"command": "getTrytes", "hashes": hashes})["trytes"] == bundle
    unknown = ok(node.url, {"command": "getTrytes", "hashes": ["X" * 81]})["trytes"]
    assert unknown == [tx.NULL_TRANSACTION]
    found = ok(node.url, {"command": "findTransactions", "addresses": ["RT" + "9" * 79]})["hashes"]
    assert found == hashes
    assert ok(node.url, {"command": "findTransactions", "tags": ["ROUND"]})["hashes"] == hashes  # padded to 27
    both = ok(node.url, {"command": "findTransactions", "addresses": ["RT" + "9" * 79],
                         "bundles": [tx.parse(bundle[0]).bundle], "approvees": [hashes[1]]})["hashes"]
    assert both == [hashes[0]]  # intersection: only the tail approves index 1
    assert ok(node.url, {"command": "findTransactions", "addresses": ["RT" + "9" * 79],
                         "bundles": ["Z" * 81]})["hashes"] == []
    assert ok(node.url, {"command": "getInclusionStates", "transactions": hashes + ["X" * 81],
                         "tips": [tx.NULL_HASH]})["states"] == [True, True, False]
    assert ok(node.url, {"command": "checkConsistency", "tails": [hashes[0]]})["state"] is True


def test_address_with_checksum_is_accepted(node: RunningNode) -> None:
    from iota import Address

    full = str(Address(b"RT" + b"9" * 79).with_valid_checksum())
    assert len(full) == 90
    a = ok(node.url, {"command": "findTransactions", "addresses": [full]})["hashes"]
    b = ok(node.url, {"command": "findTransactions", "addresses": [full[:81]]})["hashes"]
    assert a == b
    assert "checksum" in refused(node.url, {"command": "findTransactions", "addresses": [full[:-1] + "9"]})


def test_tips_and_transactions_to_approve(fresh_node: RunningNode) -> None:
    url = fresh_node.url
    empty = ok(url, {"command": "getTransactionsToApprove", "depth": 3})
    assert (empty["trunkTransaction"], empty["branchTransaction"]) == (tx.NULL_HASH, tx.NULL_HASH)
    assert ok(url, {"command": "getTips"})["hashes"] == []
    first = ok(url, {"command": "attachToTangle", "trunkTransaction": tx.NULL_HASH, "branchTransaction": tx.NULL_HASH,
                     "minWeightMagnitude": TEST_MWM, "trytes": prepared_bundle(message="A" * 3000)})["trytes"]
    ok(url, {"command": "storeTransactions", "trytes": first})
    tail = tx.parse(first[0]).hash
    assert ok(url, {"command": "getTips"})["hashes"] == [tail]
    gta = ok(url, {"command": "getTransactionsToApprove", "depth": 3})
    assert gta["trunkTransaction"] == gta["branchTransaction"] == tail
    ref = ok(url, {"command": "getTransactionsToApprove", "depth": 3, "reference": tail})
    assert ref["trunkTransaction"] == tail
    assert "reference" in refused(url, {"command": "getTransactionsToApprove", "depth": 3, "reference": "X" * 81})
    info = ok(url, {"command": "getNodeInfo"})
    assert (info["tips"], info["transactions"]) == (1, 2)


def test_attach_to_tangle_links_like_iri(node: RunningNode) -> None:
    head_first = prepared_bundle(message="L" * 5000)
    out = ok(node.url, {"command": "attachToTangle", "trunkTransaction": "T" * 81, "branchTransaction": "B" * 81,
                        "minWeightMagnitude": TEST_MWM + 1, "trytes": head_first})["trytes"]
    chain = [tx.parse(t) for t in out]
    assert [t.current_index for t in chain] == [0, 1, 2]
    assert (chain[2].trunk, chain[2].branch) == ("T" * 81, "B" * 81)
    assert (chain[0].trunk, chain[0].branch) == (chain[1].hash, "T" * 81)
    assert all(t.weight >= TEST_MWM + 1 for t in chain)
    assert tx.check_bundle(chain) is None


def test_interrupt_attaching(tmp_path: Path) -> None:
    settings_ = NodeSettings(db=tmp_path / "t.sqlite3", port=0, mwm=1, max_attach_mwm=27, pow_threads=1)
    with serve_in_thread(settings_) as n:
        answer: list[Any] = []
        worker = threading.Thread(target=lambda: answer.append(call(n.url, {
            "command": "attachToTangle", "trunkTransaction": tx.NULL_HASH, "branchTransaction": tx.NULL_HASH,
            "minWeightMagnitude": 27, "trytes": prepared_bundle()})))
        worker.start()
        # an interrupt only stops a search that is running (as in IRI), so repeat it until the attach returns
        deadline = time.monotonic() + 30
        while worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            assert set(ok(n.url, {"command": "interruptAttachingToTangle"})) == {"duration"}
            worker.join(timeout=0.3)
        assert not worker.is_alive()
        assert answer == [(200, {"trytes": [], "duration": answer[0][1]["duration"]})]
        # the node still attaches afterwards
        again = ok(n.url, {"command": "attachToTangle", "trunkTransaction": tx.NULL_HASH,
                           "branchTransaction": tx.NULL_HASH, "minWeightMagnitude": 1, "trytes": prepared_bundle()})
        assert len(again["trytes"]) == 1


def test_remote_pow_off_answers_like_a_public_node(tmp_path: Path) -> None:
    with serve_in_thread(NodeSettings(db=tmp_path / "t.sqlite3", port=0, mwm=1, remote_pow=False)) as n:
        payload = {"command": "attachToTangle", "trunkTransaction": tx.NULL_HASH, "branchTransaction": tx.NULL_HASH,
                   "minWeightMagnitude": 1, "trytes": prepared_bundle()}
        assert refused(n.url, payload, status=401) == "COMMAND attachToTangle is not available on this node"
        refused(n.url, {"command": "interruptAttachingToTangle"}, status=401)
        assert ok(n.url, {"command": "getNodeInfo"})["features"] == []


def test_zero_value_ledger(node: RunningNode) -> None:
    balances = ok(node.url, {"command": "getBalances", "addresses": ["A" * 81, "B" * 81], "threshold": 100})
    assert balances["balances"] == ["0", "0"] and balances["references"] == [tx.NULL_HASH]
    assert ok(node.url, {"command": "wereAddressesSpentFrom", "addresses": ["A" * 81]})["states"] == [False]
    assert ok(node.url, {"command": "getNeighbors"})["neighbors"] == []


# ---- refusals: IRI's error shape, status 400 ----

def _tx(mwm: int = TEST_MWM, **fields: str) -> str:
    """One attached single-transaction bundle, with fields changed before PoW."""
    head_first = prepared_bundle(message="ERR")
    t = head_first[0]
    for name, value in fields.items():
        t = tx.with_field(t, getattr(tx, name.upper()), value)
    return attach_trytes([t], tx.NULL_HASH, tx.NULL_HASH, mwm, threads=1)[0]


def _light_tx() -> str:
    """A transaction whose hash has fewer than TEST_MWM trailing zero trits (searched, not hoped for)."""
    base = prepared_bundle(message="LIGHT")[0]
    for i in range(1000):
        t = base[:-27] + tx.int_trytes(i, 27)
        if tx.trailing_zero_trits(tx.transaction_hash(t)) < TEST_MWM:
            return t
    raise AssertionError("no light transaction found")


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"command": "nope"}, "Command [nope] is unknown"),
        ({"command": 5}, "Command [5] is unknown"),
        ({"nocommand": 1}, "COMMAND parameter has not been specified"),
        ([1, 2], "JSON object"),
        ({"command": "getTrytes"}, "hashes is missing"),
        ({"command": "getTrytes", "hashes": "A" * 81}, "must be a list"),
        ({"command": "getTrytes", "hashes": ["a" * 81]}, "Invalid hashes input"),
        ({"command": "getTrytes", "hashes": ["A" * 81] * 10_001}, "limit is 10000"),
        ({"command": "storeTransactions", "trytes": []}, "empty"),
        ({"command": "storeTransactions", "trytes": ["A" * 2672]}, "Invalid trytes input"),
        ({"command": "storeTransactions", "trytes": ["a" * 2673]}, "Invalid trytes input"),
        ({"command": "storeTransactions", "trytes": [None]}, "Invalid trytes input"),
        ({"command": "storeTransactions", "trytes": ["9" * 2673] * 1001}, "limit is 1000"),
        ({"command": "broadcastTransactions", "trytes": [7]}, "Invalid trytes input"),
        ({"command": "findTransactions"}, "at least one of"),
        ({"command": "findTransactions", "approvees": ["A" * 80]}, "Invalid approvees input"),
        ({"command": "findTransactions", "tags": ["A" * 28]}, "Invalid tags input"),
        ({"command": "findTransactions", "addresses": ["A" * 82]}, "Invalid addresses input"),
        ({"command": "getTransactionsToApprove"}, "depth is missing"),
        ({"command": "getTransactionsToApprove", "depth": 16}, "Invalid depth input"),
        ({"command": "getTransactionsToApprove", "depth": "3"}, "Invalid depth input"),
        ({"command": "getTransactionsToApprove", "depth": True}, "Invalid depth input"),
        ({"command": "getTransactionsToApprove", "depth": 3, "reference": "x"}, "Invalid reference input"),
        ({"command": "attachToTangle", "trunkTransaction": "A" * 81, "branchTransaction": "A" * 81,
          "minWeightMagnitude": TEST_MWM - 1, "trytes": ["9" * 2673]}, "below this node's minimum"),
        ({"command": "attachToTangle", "trunkTransaction": "A" * 81, "branchTransaction": "A" * 81,
          "minWeightMagnitude": 19, "trytes": ["9" * 2673]}, "above this node's limit"),
        ({"command": "attachToTangle", "trunkTransaction": "A", "branchTransaction": "A" * 81,
          "minWeightMagnitude": TEST_MWM, "trytes": ["9" * 2673]}, "Invalid trunkTransaction"),
        ({"command": "attachToTangle", "trunkTransaction": "A" * 81, "branchTransaction": "A" * 81,
          "minWeightMagnitude": TEST_MWM, "trytes": ["9" * 10]}, "Invalid trytes input"),
        ({"command": "getInclusionStates", "transactions": ["A" * 81], "tips": ["?"]}, "Invalid tips input"),
        ({"command": "checkConsistency", "tails": ["A" * 81]}, "missing or not a tail"),
        ({"command": "getBalances", "addresses": ["A" * 81], "threshold": 0}, "Invalid threshold input"),
        ({"command": "wereAddressesSpentFrom"}, "addresses is missing"),
    ],
)
def test_bad_requests(node: RunningNode, payload: Any, match: str) -> None:
    assert match in refused(node.url, payload)


def test_invalid_transactions_are_refused(node: RunningNode) -> None:
    assert "Invalid transaction hash" in refused(node.url, {"command": "storeTransactions", "trytes": [_light_tx()]})
    value = _tx(value=tx.int_trytes(5, 27))
    assert "zero-value" in refused(node.url, {"command": "storeTransactions", "trytes": [value]})
    bad_index = _tx(current_index=tx.int_trytes(3, 9))
    assert "currentIndex 3" in refused(node.url, {"command": "storeTransactions", "trytes": [bad_index]})
    future = attach_trytes([prepared_bundle(message="FUTURE")[0]], tx.NULL_HASH, tx.NULL_HASH, TEST_MWM, threads=1,
                           now_ms=lambda: int(time.time() * 1000) + 3 * 3600 * 1000)
    assert "timestamp" in refused(node.url, {"command": "storeTransactions", "trytes": future})
    forged = _tx(obsolete_tag="FORGED".ljust(27, "9"))  # single-transaction bundle: complete, wrong Kerl hash
    assert "Kerl" in refused(node.url, {"command": "storeTransactions", "trytes": [forged]})
    assert ok(node.url, {"command": "getTrytes", "hashes": [tx.parse(forged).hash]})["trytes"] == [tx.NULL_TRANSACTION]
    # a broadcast validates too, and stores nothing
    assert "Invalid transaction hash" in refused(node.url, {"command": "broadcastTransactions",
                                                            "trytes": [_light_tx()]})


def test_http_level_refusals(node: RunningNode) -> None:
    body = json.dumps({"command": "getNodeInfo"}).encode()
    assert refused(node.url, raw=body, headers={"Content-Type": "application/json"}) == "Invalid API Version"
    assert "Invalid JSON" in refused(node.url, raw=b"{not json", headers=HEADERS)
    assert "Invalid JSON" in refused(node.url, raw=b"\xff\xfe\x00garbage", headers=HEADERS)
    assert "Invalid JSON" in refused(node.url, raw=b"[" * 100_000 + b"]" * 100_000, headers=HEADERS)
    assert "Invalid JSON" in refused(node.url, raw=b"", headers=HEADERS)
    assert "POST" in refused(node.url, method="GET", raw=b"", headers=HEADERS)
    huge = json.dumps({"command": "storeTransactions", "trytes": ["9" * 2673] * 400}).encode()
    assert len(huge) > 1_000_000
    assert "Request too long" in refused(node.url, raw=huge, headers=HEADERS)

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(200):
            yield b" " * 10_000

    response = requests.post(node.url, data=chunks(), headers=HEADERS, timeout=30)
    assert response.status_code == 400 and "Request too long" in response.json()["error"]
    options = requests.options(node.url, timeout=10)
    assert options.status_code == 200 and options.headers["Access-Control-Allow-Origin"] == "*"
    # any path answers like IRI's single endpoint
    assert call(node.url + "/some/path", {"command": "getNeighbors"})[0] == 200


COMMANDS = ["getNodeInfo", "getTips", "getTransactionsToApprove", "attachToTangle", "storeTransactions",
            "broadcastTransactions", "findTransactions", "getTrytes", "getInclusionStates", "checkConsistency",
            "getBalances", "wereAddressesSpentFrom", "interruptAttachingToTangle", "getNeighbors", "bogus"]
KEYS = ["hashes", "trytes", "addresses", "bundles", "tags", "approvees", "tails", "transactions", "tips", "depth",
        "reference", "threshold", "minWeightMagnitude", "trunkTransaction", "branchTransaction"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(alphabet="9ABCXYZ", max_size=100) | st.sampled_from(["9" * 81, "A" * 81, "9" * 2673, "A" * 90]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), params=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5))
def test_fuzzed_requests_never_fail_the_node(node: RunningNode, command: str, params: dict[str, Any]) -> None:
    payload = {"command": command, **params}
    if command == "attachToTangle" and isinstance(payload.get("minWeightMagnitude"), int):
        payload["minWeightMagnitude"] = min(payload["minWeightMagnitude"], 5)  # keep any accepted PoW short
    status, body = call(node.url, payload)
    assert status in (200, 400), (status, body)
    assert isinstance(body, dict)
    if status == 400:
        assert isinstance(body.get("error"), str) and "Traceback" not in body["error"]


@pytest.mark.parametrize("name", list(malformed_requests("/", "127.0.0.1")))
def test_malformed_http_is_a_json_400_without_traceback_and_the_node_carries_on(
        node: RunningNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """What docs/tangle-node.md promises for any bad input, down to the HTTP framing (raw sockets: a client library
    would not send these)."""
    monkeypatch.delenv("SCB_DEBUG", raising=False)
    caplog.set_level(logging.DEBUG)
    host = node.url.removeprefix("http://")
    r = send_raw(node.url, malformed_requests("/", host, HEADERS)[name])
    assert r.status == 400, (name, r.body)
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] and "Traceback" not in body["error"]
    if name in BODY_CASES:  # the node's own answer, with IRI's fields
        assert set(body) == {"error", "duration"} and "cannot be read" in body["error"]
    assert_no_traceback(caplog.records)
    assert ok(node.url, {"command": "getNodeInfo"})["appName"] == "SCB tangle-node"
