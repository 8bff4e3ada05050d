"""PyotaTransport's error mapping, offline: what the node answers decides what callers see.

HTTP 4xx -> NodeRefused with the node's reason; unreachable, timeouts, 5xx, answers that are not IRI answers ->
NodeUnavailable; a bug of ours (an exception PyOTA or we raise about our own request) propagates unchanged.
The happy paths and a real node's refusals run against the real tangle node (test_transport_node.py,
test_reliability.py, test_fetch_cli.py); here `responses` plays a broken node, which a real one will not do on
demand.
"""
from __future__ import annotations

import json

import pytest
import requests
import responses

from mam_client.transport import PyotaTransport
from scb.errors import NodeRefused, NodeUnavailable, ScbError

URL = "http://node.invalid:14265"
ADDRESS = "A" * 81
HASH = "T" * 81


def transport() -> PyotaTransport:
    return PyotaTransport(URL, mwm=1, timeout_s=1)


def answer(status: int, body: object) -> None:
    responses.add(responses.POST, URL, status=status,
                  body=body if isinstance(body, str) else json.dumps(body), content_type="application/json")


@responses.activate
@pytest.mark.parametrize("status, body, reason", [
    (400, {"error": "Invalid addresses input"}, "(HTTP 400): Invalid addresses input"),
    (401, {"error": "COMMAND findTransactions is not available on this node"}, "(HTTP 401): COMMAND"),
    (404, "", "(HTTP 404)"),
])
def test_client_errors_are_refusals_with_the_nodes_reason(status: int, body: object, reason: str) -> None:
    answer(status, body)
    with pytest.raises(NodeRefused) as caught:
        transport().find_bundles(ADDRESS)
    assert reason in str(caught.value) and "findTransactions refused" in str(caught.value)


@responses.activate
@pytest.mark.parametrize("status, body, reason", [
    (500, {"exception": "boom"}, "(HTTP 500): boom"),
    (503, "<html>maintenance</html>", "(HTTP 503)"),
    (429, {"error": "slow down"}, "(HTTP 429): slow down"),  # a rate limit clears by itself: not a refusal
    (408, {"error": "request timeout"}, "(HTTP 408)"),
    (200, "not json", "(HTTP 200)"),
    (200, {"hashes": "not a list"}, "malformed answer"),
])
def test_outages_and_broken_answers_are_node_unavailable(status: int, body: object, reason: str) -> None:
    answer(status, body)
    with pytest.raises(NodeUnavailable) as caught:
        transport().find_bundles(ADDRESS)
    assert reason in str(caught.value) and "findTransactions failed" in str(caught.value)


@responses.activate
@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("read timed out")])
def test_connection_errors_and_timeouts_are_node_unavailable(error: Exception) -> None:
    responses.add(responses.POST, URL, body=error)
    with pytest.raises(NodeUnavailable, match="node.invalid"):
        transport().attach(ADDRESS, "HELLO", "SCB")


def test_a_bug_of_ours_propagates_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    t = transport()
    with pytest.raises(ValueError) as caught:  # PyOTA refuses the address we built: our bug, not the node's
        t.find_bundles("not an address")
    assert not isinstance(caught.value, ScbError)

    def broken(**_kwargs: object) -> dict:
        raise TypeError("unexpected keyword")

    monkeypatch.setattr(t.api, "find_transactions", broken)
    with pytest.raises(TypeError, match="unexpected keyword"):
        t.find_bundles(ADDRESS)


@responses.activate
def test_an_inconsistent_attachment_is_unavailable_and_never_stored() -> None:
    commands: list[str] = []

    def node(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        command = json.loads(request.body)["command"]
        commands.append(command)
        if command == "getTransactionsToApprove":
            return 200, {}, json.dumps({"trunkTransaction": HASH, "branchTransaction": HASH})
        if command == "attachToTangle":
            return 200, {}, json.dumps({"trytes": []})  # what IRI answers when the attach was interrupted
        return 200, {}, json.dumps({})

    responses.add_callback(responses.POST, URL, callback=node, content_type="application/json")
    with pytest.raises(NodeUnavailable, match="inconsistent bundle"):
        transport().attach(ADDRESS, "HELLO", "SCB")
    assert commands == ["getTransactionsToApprove", "attachToTangle"]  # neither stored nor broadcast


@responses.activate
def test_no_transactions_is_an_empty_list_not_an_error() -> None:
    responses.add(responses.POST, URL, json={"hashes": [], "duration": 0})
    assert transport().find_bundles(ADDRESS) == []
    sent = json.loads(responses.calls[0].request.body)
    assert sent["command"] == "findTransactions" and sent["addresses"] == [ADDRESS]
