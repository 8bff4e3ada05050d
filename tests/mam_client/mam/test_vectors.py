"""Every value in ../shared/mam-v0/vectors.json (produced by @iota/mam.js 1.0.0-beta.10) is reproduced."""
from __future__ import annotations

from typing import Any

import pytest

from mam_client.crypto.trits import from_values, trits, trytes
from mam_client.mam import (
    ChannelState,
    InvalidChannel,
    InvalidInput,
    InvalidPayload,
    SignatureMismatch,
    WrongKeyOrRoot,
    channel_root,
    create_channel,
    create_message,
    decode_address,
    parse_message,
)
from mam_client.mam import keys, pascal

#: mam.js error -> the specific exception SCB raises for the same input
ERROR_MAP = {
    "Message Hash did not have a hamming weight of zero, security level is invalid": WrongKeyOrRoot,
    "Signature did not match expected root": SignatureMismatch,
    "offset is out of bounds": InvalidPayload,
    "Maximum call stack size exceeded": InvalidPayload,
}


def state_of(channel: dict[str, Any], state: dict[str, Any]) -> ChannelState:
    return ChannelState.from_json(
        dict(state, seed=channel["seed"], mode=channel["mode"], security=channel["security"],
             sideKey=channel["sideKey_input"])
    )


def all_channels(v: dict[str, Any]) -> list[dict[str, Any]]:
    return v["channels"] + v["merkle_channels"]


def test_leaves_and_subseeds(mam_vectors) -> None:
    seed = trits(mam_vectors["meta"]["seed"])
    checked = 0
    for leaf in mam_vectors["leaves"]:
        if "subseed" in leaf:
            assert trytes(keys.subseed(seed, leaf["index"])) == leaf["subseed"]
            blocks = keys.key_blocks(seed, leaf["index"], leaf["security"])
            from mam_client.crypto.curl import hash_trits

            key = b"".join(hash_trits(b) for b in blocks)
            assert trytes(key[:243]) == leaf["private_key_first_81_trytes"]
            assert trytes(key[-243:]) == leaf["private_key_last_81_trytes"]
            address = keys.leaf_address(seed, leaf["index"], leaf["security"])
            assert trytes(address) == leaf["address"]
            assert decode_address(leaf["address"], "private") == leaf["private_address_maskHash_curl81"]
        else:
            leaves = [keys.leaf_address(seed, leaf["start"] + i, leaf["security"]) for i in range(leaf["count"])]
            assert trytes(keys.tree_levels(leaves)[-1][0]) == leaf["root"]
        checked += 1
    assert checked == len(mam_vectors["leaves"]) > 0


def test_pascal_table(mam_vectors) -> None:
    for row in mam_vectors["pascal"]:
        expected = [int(t) for t in row["trits"].split(",")]
        assert list(pascal.encode(row["value"])) == list(from_values(expected))
        value, used = pascal.decode(from_values(expected) + bytes(10))
        assert (value, used) == (row["decodes_to"], row["decode_end"])


@pytest.mark.parametrize("which", ["channels", "merkle_channels"])
def test_channels_create_byte_identical(mam_vectors, which: str) -> None:
    count = 0
    for channel in mam_vectors[which]:
        state = state_of(channel, channel["initial_state"])
        for msg in channel["messages"]:
            assert state.to_json(include_secrets=False) == dict(
                msg["state_before"], mode=channel["mode"], security=channel["security"],
                **({"nextRoot": state.next_root} if state.next_root else {}))
            assert channel_root(state) == msg["channelRoot_before"]
            created = create_message(state, msg["message_trytes"])
            assert created.payload == msg["payload"], f"{channel['id']} message {msg['n']}"
            assert (created.root, created.address, created.next_root) == (msg["root"], msg["address"], msg["nextRoot"])
            expected_after = dict(msg["state_after"], mode=channel["mode"], security=channel["security"])
            assert state.to_json(include_secrets=False) == expected_after
            count += 1
    assert count > 0


def test_channels_parse(mam_vectors) -> None:
    for channel in all_channels(mam_vectors):
        for msg in channel["messages"]:
            parsed = parse_message(msg["payload"], msg["root"], channel["sideKey_input"])
            assert msg["parse"]["ok"]
            assert parsed.message == msg["parse"]["message_trytes"]
            assert parsed.next_root == msg["parse"]["nextRoot"]


def test_chain_links(mam_vectors) -> None:
    """Each message's nextRoot is the root of the next tree (the chain a reader walks)."""
    for channel in all_channels(mam_vectors):
        msgs = channel["messages"]
        for a, b in zip(msgs, msgs[1:]):
            if b["root"] != a["root"]:
                assert a["nextRoot"] == b["root"]


def test_mam_client_js_payloads_parse(mam_vectors) -> None:
    """Payloads of mam.client.js 0.7.3 (different nonce lanes and pascal flags) parse too (SPEC §11.15)."""
    seen = 0
    for channel in all_channels(mam_vectors):
        for msg in channel["messages"]:
            other = msg["cross_check_mam_client_js_0_7_3"].get("mam_client_payload")
            if other:
                parsed = parse_message(other, msg["root"], channel["sideKey_input"])
                assert parsed.message == msg["message_trytes"]
                seen += 1
    assert seen > 0


def test_pitfall_count3(mam_vectors) -> None:
    case = mam_vectors["pitfalls"]["count3"]
    for msg in case["messages"]:
        if msg["parse"]["ok"]:
            assert parse_message(msg["payload"], msg["root"]).message == msg["parse"]["message_trytes"]
        else:
            with pytest.raises(ERROR_MAP[msg["parse"]["error"]]):
                parse_message(msg["payload"], msg["root"])
    with pytest.raises(InvalidChannel, match="power of two"):
        create_channel(case["seed"], "public", security=1, count=3)


def test_pitfall_count_differs_from_next_count(mam_vectors) -> None:
    case = mam_vectors["pitfalls"]["count1_nextCount2"]
    with pytest.raises(InvalidChannel, match="nextCount"):
        state_of(case, case["initial_state"])


def _payload_for(v: dict[str, Any], channel_id: str, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    channel = next(c for c in all_channels(v) if c["id"] == channel_id)
    return channel, channel["messages"][n]


def test_negative_cases(mam_vectors) -> None:
    base_channel, base = _payload_for(mam_vectors, "restricted-sec1", 0)
    checked = 0
    for case in mam_vectors["negative"]:
        name = case["case"]
        payload, root, key = base["payload"], base["root"], base_channel["sideKey_input"]
        if "tryte_position" in case:
            pos = case["tryte_position"]
            assert payload[pos] == case["tryte_from"]
            payload = payload[:pos] + case["tryte_to"] + payload[pos + 1 :]
            root, key = case["parse_args"]["root"], case["parse_args"]["sideKey"]
        elif name.startswith("modify only padding"):
            payload = payload[:-1] + case["tryte_to"]
            assert base["payload"][-1] == case["tryte_from"]
        elif name.startswith("append 2187"):
            payload += "9" * 2187
        elif name.startswith("append arbitrary"):
            payload += "GARBAGE"
        elif name == "truncate payload by 100 trytes":
            payload = payload[:-100]
        elif name == "truncate payload to 500 trytes":
            payload = payload[:500]
        elif name.startswith("payload of 3000 'N'"):
            payload = "N" * 3000
        elif name == "payload '' (empty string)":
            payload = ""
        elif name == "wrong sideKey 'WRONGKEY'":
            key = "WRONGKEY"
        elif name == "wrong sideKey 'MYSIDEKEX' (one tryte off)":
            key = "MYSIDEKEX"
        elif name == "restricted message parsed without sideKey":
            key = None
        elif name == "sideKey given already padded to 81 trytes":
            key = key.ljust(81, "9")
        elif name.startswith("sideKey given with extra trailing 9s"):
            key = key.ljust(90, "9")
        elif name.startswith("wrong root"):
            root = base["nextRoot"]
        elif name.startswith("public and private payloads are identical"):
            seed = base_channel["seed"]
            pub = create_message(create_channel(seed, "public", security=1), base["message_trytes"])
            priv = create_message(create_channel(seed, "private", security=1), base["message_trytes"])
            assert pub.payload == priv.payload
            assert (pub.address, priv.address) == (case["address_public"], case["address_private"])
            checked += 1
            continue
        elif name.startswith("private payload parsed as public"):
            _, priv = _payload_for(mam_vectors, "private-sec1", 0)
            payload, root, key = priv["payload"], priv["root"], None
        elif name.startswith("createMessage with"):
            message = "" if "empty" in name else "hello"
            with pytest.raises(InvalidInput, match=case["result"]["error"]):
                create_message(create_channel(base_channel["seed"], "public", security=1), message)
            checked += 1
            continue
        elif name.startswith("createChannel"):
            seed = base_channel["seed"]
            args = {
                "createChannel restricted without sideKey": (seed, "restricted", None, 1),
                "createChannel public with sideKey": (seed, "public", "KEY", 1),
                "createChannel restricted with 82-tryte sideKey": (seed, "restricted", "A" * 82, 1),
                "createChannel security 4": (seed, "public", None, 4),
                "createChannel short seed": (seed[:80], "public", None, 1),
            }[name]
            with pytest.raises(InvalidInput, match=case["result"]["error"]):
                create_channel(*args)
            checked += 1
            continue
        else:
            pytest.fail(f"negative case not handled by this test: {name}")
        result = case["result"]
        if result["ok"]:
            parsed = parse_message(payload, root, key)
            assert (parsed.message, parsed.next_root) == (result["message"], result["nextRoot"]), name
        else:
            with pytest.raises(ERROR_MAP[result["error"]]):
                parse_message(payload, root, key)
        checked += 1
    assert checked == len(mam_vectors["negative"])
