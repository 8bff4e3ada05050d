"""Channel state JSON: mam.js field names, moves both ways between SCB and mam.js, bad settings refused."""
from __future__ import annotations

import json

import pytest

from mam_client.mam import ChannelState, InvalidChannel, InvalidInput, create_channel, create_message
from tests.conftest import run_node

SEED = "SCBTESTSEED" + "9" * 60 + "ABCDEFGHIJ"


def test_fields_are_mamjs_names() -> None:
    state = create_channel(SEED, "restricted", side_key="KEY", security=1)
    data = state.to_json()
    assert set(data) == {"seed", "mode", "sideKey", "security", "start", "count", "nextCount", "index"}
    create_message(state, "ABC")
    assert set(state.to_json()) >= {"nextRoot"}
    assert "seed" not in state.to_json(include_secrets=False)
    assert "sideKey" not in state.to_json(include_secrets=False)
    assert ChannelState.loads(state.dumps()) == state


def test_state_moves_from_mamjs_to_scb_and_back() -> None:
    # mam.js creates a channel and two messages; SCB continues it, then hands it back to mam.js.
    out = run_node("mamjs_codec.js", {"ops": [{"op": "create", "state": None, "messages": ["AAA", "BBB"],
                                               "channel": {"seed": SEED, "mode": "restricted", "sideKey": "SIDE",
                                                           "security": 1}}]})["results"][0]
    js_state = out["state"]
    ours = ChannelState.from_json(js_state)
    third = create_message(ours, "CCC")
    assert third.root == out["created"][-1]["nextRoot"]
    back = json.loads(ours.dumps())
    js = run_node("mamjs_codec.js", {"ops": [
        {"op": "create", "state": json.loads(ours.dumps()), "messages": ["DDD"], "channel": None},
        {"op": "parse", "payload": third.payload, "root": third.root, "sideKey": "SIDE"},
    ]})["results"]
    fourth_js = js[0]["created"][0]
    fourth_ours = create_message(ChannelState.from_json(back), "DDD")
    assert fourth_js["payload"] == fourth_ours.payload
    assert fourth_js["root"] == third.next_root
    assert js[1] == {"ok": True, "message": "CCC", "nextRoot": third.next_root}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"count": 1, "nextCount": 2}, "nextCount"),
        ({"count": 3, "nextCount": 3}, "power of two"),
        ({"count": 0, "nextCount": 0}, "positive"),
        ({"count": 2048, "nextCount": 2048}, "at most"),
        ({"index": 1}, "outside"),
        ({"start": -1}, "non-negative"),
        ({"mode": "secret"}, "mode"),
        ({"nextRoot": "abc"}, "nextRoot"),
    ],
)
def test_bad_states_are_refused(change: dict, match: str) -> None:
    data = create_channel(SEED, "public", security=1).to_json()
    data.update(change)
    with pytest.raises(InvalidChannel, match=match):
        ChannelState.from_json(data)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidChannel):
        ChannelState.loads("{not json")
    with pytest.raises(InvalidChannel, match="lacks"):
        ChannelState.from_json({"mode": "public"})
    with pytest.raises(InvalidInput, match="Security"):
        ChannelState.from_json({"seed": SEED, "mode": "public", "security": True})
    with pytest.raises(InvalidInput, match="81 trytes"):
        create_channel("abc", "public")
