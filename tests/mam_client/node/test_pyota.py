"""PyOTA 2.1.0's `Iota` client against the running node: send_trytes, find_transaction_objects, get_bundles."""
from __future__ import annotations

from pathlib import Path

from iota import Address, Iota, ProposedTransaction, Tag, TryteString
from iota.adapter import BadApiResponse
import pytest

from mam_client.node import transaction as tx
from mam_client.node.server import RunningNode, serve_in_thread
from mam_client.node.settings import NodeSettings
from tests.mam_client.node.conftest import TEST_MWM
from tests.mam_client.node.helpers import prepared_bundle


def test_send_find_get_bundles(node: RunningNode) -> None:
    api = Iota(node.url)
    address = "PYOTA" + "9" * 76
    message = "PYOTAMESSAGE" * 250  # 3000 trytes: a two-transaction bundle
    prepared = [TryteString(t.encode()) for t in prepared_bundle(address=address, message=message, tag="PYOTA")]
    sent = api.send_trytes(prepared, depth=3, min_weight_magnitude=TEST_MWM)["trytes"]
    assert len(sent) == 2

    found = api.find_transaction_objects(addresses=[Address(address.encode())])["transactions"]
    assert sorted(t.current_index for t in found) == [0, 1]
    tail = next(t for t in found if t.current_index == 0)
    assert str(tail.hash) == tx.parse(str(sent[0])).hash  # PyOTA's own Curl-P-81 agrees with the node

    bundles = api.get_bundles(tail.hash)["bundles"]  # PyOTA walks trunk and validates the bundle
    assert len(bundles) == 1
    bundle = bundles[0]
    assert str(bundle.hash) == str(tail.bundle_hash)
    text = "".join(str(t.signature_message_fragment) for t in bundle.transactions)
    assert text.rstrip("9") == message.rstrip("9")
    assert api.get_inclusion_states([tail.hash], [tail.hash])["states"] == [True]

    # a second transfer approves the first bundle's tail: the tangle grows from its tips
    second = api.send_transfer(
        depth=3, min_weight_magnitude=TEST_MWM,
        transfers=[ProposedTransaction(address=Address(address.encode()), value=0, tag=Tag(b"PYOTA"),
                                       message=TryteString.from_unicode("second"))],
    )["bundle"]
    head = second.transactions[-1]
    assert str(tail.hash) in (str(head.trunk_transaction_hash), str(head.branch_transaction_hash))


def test_node_errors_reach_pyota_as_bad_api_response(node: RunningNode) -> None:
    api = Iota(node.url)
    with pytest.raises(BadApiResponse, match="400 response from node: Invalid minWeightMagnitude"):
        api.send_trytes([TryteString(t.encode()) for t in prepared_bundle()], depth=3,
                        min_weight_magnitude=TEST_MWM - 1)


def test_mwm_9_end_to_end(tmp_path: Path) -> None:
    """One run at the hub's default minimum weight magnitude (the others use a low one for speed)."""
    with serve_in_thread(NodeSettings(db=tmp_path / "t.sqlite3", port=0, mwm=9)) as node9:
        api = Iota(node9.url)
        sent = api.send_trytes([TryteString(t.encode()) for t in prepared_bundle(message="NINE")],
                               depth=3, min_weight_magnitude=9)["trytes"]
        parsed = tx.parse(str(sent[0]))
        assert parsed.weight >= 9
        assert api.check_consistency([parsed.hash])["state"] is True
        # a transaction attached for MWM 3 does not get in
        light = [TryteString(t.encode()) for t in prepared_bundle(message="LIGHT")]
        with pytest.raises(BadApiResponse, match="below this node's minimum weight magnitude 9"):
            api.send_trytes(light, depth=3, min_weight_magnitude=3)
