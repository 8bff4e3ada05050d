"""PyotaTransport's error mapping, offline: whatever the node answers, callers see NodeUnavailable or data.

The happy paths run against the real tangle node (test_reliability.py, test_fetch_cli.py);
here `responses` plays a broken node, which a real one will not do on demand.
"""
from __future__ import annotations

import json

import pytest
import requests
import responses

from mam_client.transport import PyotaTransport
from scb.errors import NodeUnavailable

URL = "http://node.invalid:14265"
ADDRESS = "A" * 81


def transport() -> PyotaTransport:
    return PyotaTransport(URL, mwm=1, timeout_s=1)


@responses.activate
@pytest.mark.parametrize("status, body", [
    (400, {"error": "Invalid addresses input"}),
    (500, {"exception": "boom"}),
    (200, "not json"),
    (200, {"hashes": "not a list"}),
    (503, "<html>maintenance</html>"),
])
def test_bad_answers_become_node_unavailable(status: int, body: object) -> None:
    responses.add(responses.POST, URL, status=status,
                  body=body if isinstance(body, str) else json.dumps(body), content_type="application/json")
    with pytest.raises(NodeUnavailable, match="findTransactions failed"):
        transport().find_bundles(ADDRESS)


@responses.activate
def test_connection_errors_become_node_unavailable() -> None:
    responses.add(responses.POST, URL, body=requests.ConnectionError("refused"))
    with pytest.raises(NodeUnavailable, match="node.invalid"):
        transport().attach(ADDRESS, "HELLO", "SCB")


@responses.activate
def test_no_transactions_is_an_empty_list_not_an_error() -> None:
    responses.add(responses.POST, URL, json={"hashes": [], "duration": 0})
    assert transport().find_bundles(ADDRESS) == []
    sent = json.loads(responses.calls[0].request.body)
    assert sent["command"] == "findTransactions" and sent["addresses"] == [ADDRESS]
