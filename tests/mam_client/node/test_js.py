"""The reference JavaScript clients against the running node: @iota/core 1.0.0-beta.30 and @iota/mam.js
1.0.0-beta.10 (channels and messages created by mam.js itself)."""
from __future__ import annotations

from typing import Any

from iota import Iota

from mam_client.node import transaction as tx
from mam_client.node.server import RunningNode
from tests.conftest import run_node
from tests.mam_client.node.conftest import TEST_MWM
from tests.mam_client.node.helpers import ok

SEED = "SCBTESTSEED" * 7 + "9" * 4


def core(node: RunningNode, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    return run_node("iota_core_client.js", {"provider": node.url, "ops": list(ops)})["results"]


def test_iota_core_prepare_send_find_get_bundle(node: RunningNode) -> None:
    address = "IOTAJS" + "9" * 75
    message = "JSMESSAGE" * 300  # 2700 trytes: two transactions
    transfer = {"address": address, "value": 0, "message": message, "tag": "IOTAJS"}
    results = core(
        node,
        {"method": "getNodeInfo"},
        {"method": "prepareTransfers", "args": ["9" * 81, [transfer]]},
        {"method": "sendTrytes", "args": [{"$result": 1}, 3, TEST_MWM]},
        {"method": "findTransactionObjects", "args": [{"addresses": [address]}]},
    )
    assert all(r["ok"] for r in results), results
    assert results[0]["value"]["appName"] == "SCB tangle-node"
    sent = results[2]["value"]
    assert [t["currentIndex"] for t in sent] == [0, 1]  # sendTrytes returns the node's answer tail first
    tail_hash = sent[0]["hash"]
    found = results[3]["value"]
    assert sorted(t["hash"] for t in found) == sorted(t["hash"] for t in sent)

    later = core(
        node,
        {"method": "getBundle", "args": [tail_hash]},  # iota.js walks trunk and validates the bundle itself
        {"method": "checkConsistency", "args": [[tail_hash]]},
        {"method": "getInclusionStates", "args": [[tail_hash], [tail_hash]]},
        {"method": "getTransactionsToApprove", "args": [3]},
        {"method": "getBalances", "args": [[address]]},
        {"method": "wereAddressesSpentFrom", "args": [[address]]},
    )
    assert all(r["ok"] for r in later), later
    bundle = later[0]["value"]
    assert [t["hash"] for t in bundle] == [t["hash"] for t in sent]
    assert "".join(t["signatureMessageFragment"] for t in bundle).rstrip("9") == message.rstrip("9")
    assert later[1]["value"] is True
    assert later[2]["value"] == [True]
    tip = later[3]["value"]["trunkTransaction"]  # a tail of a valid bundle, ready to be approved
    assert ok(node.url, {"command": "checkConsistency", "tails": [tip]})["state"] is True
    assert later[4]["value"]["balances"] == [0]
    assert later[5]["value"] == [False]

    # PyOTA reads what iota.js wrote, and the node agrees it is one consistent bundle
    pyota_bundle = Iota(node.url).get_bundles(tail_hash)["bundles"][0]
    assert str(pyota_bundle.hash) == sent[0]["bundle"]


def test_iota_core_sees_node_refusals(node: RunningNode) -> None:
    results = core(
        node,
        {"method": "prepareTransfers", "args": ["9" * 81, [{"address": "R" * 81, "value": 0, "message": "AB"}]]},
        {"method": "sendTrytes", "args": [{"$result": 0}, 3, TEST_MWM - 1]},  # below the node's MWM
        {"method": "checkConsistency", "args": [["9" * 81]]},
    )
    assert results[0]["ok"]
    assert not results[1]["ok"] and "below this node's minimum weight magnitude" in results[1]["error"]
    assert not results[2]["ok"]


def mam(node: RunningNode, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    return run_node("mamjs_tangle.js", {"provider": node.url, "ops": list(ops)})["results"]


def test_mamjs_attach_fetch_fetch_all(node: RunningNode) -> None:
    messages = ["FIRST9MESSAGE", "SECOND" * 500, "THIRD"]  # the second spans two transactions
    channels = [
        {"seed": "PUBLIC" + "9" * 75, "mode": "public", "security": 1},
        {"seed": "RESTRICTED" + "9" * 71, "mode": "restricted", "sideKey": "SIDEKEY", "security": 2},
    ]
    published = mam(node, *[{"op": "publish", "channel": c, "messages": messages, "depth": 3, "mwm": TEST_MWM,
                             "tag": "SCBMAM"} for c in channels])
    for channel, pub in zip(channels, published):
        items = pub["published"]
        assert len(items) == 3
        first = items[0]
        # what mam.js attached is on the node, as consistent bundles
        for item in items:
            hashes = ok(node.url, {"command": "findTransactions", "addresses": [item["address"]]})["hashes"]
            assert set(item["hashes"]) == set(hashes)
            tail = tx.parse(ok(node.url, {"command": "getTrytes", "hashes": [item["hashes"][0]]})["trytes"][0])
            assert tail.current_index == 0
            assert ok(node.url, {"command": "checkConsistency", "tails": [tail.hash]})["state"] is True
        side = channel.get("sideKey")
        fetched = mam(
            node,
            {"op": "fetch", "root": first["root"], "mode": channel["mode"], "sideKey": side},
            {"op": "fetchAll", "root": first["root"], "mode": channel["mode"], "sideKey": side},
            {"op": "fetchAll", "root": first["root"], "mode": channel["mode"], "sideKey": side, "limit": 2},
            {"op": "fetch", "root": "UNKNOWN" + "9" * 74, "mode": channel["mode"], "sideKey": side},
        )
        one, everything, limited, nothing = fetched
        assert one["ok"] and one["message"]["message"] == messages[0]
        assert one["message"]["nextRoot"] == items[1]["root"]
        assert one["message"]["tag"] == "SCBMAM".ljust(27, "9")
        assert everything["ok"] and [m["message"] for m in everything["messages"]] == messages
        assert [m["root"] for m in everything["messages"]] == [i["root"] for i in items]
        assert [m["message"] for m in limited["messages"]] == messages[:2]
        assert nothing == {"ok": True, "message": None}
