"""Runs on 64-bit ARM (under qemu-aarch64, see arm64_check.sh) with the aarch64 build of _curl.c.

Checks what must not depend on the CPU: every MAM vector message is created and parsed byte for byte, and a
Curl-P-81 proof of work meets its minimum weight magnitude. Usage: python3 arm64_check.py REPO
"""
from __future__ import annotations

import json
import platform
import sys
import time

REPO = sys.argv[1]
sys.path.insert(0, REPO)

from mam_client.crypto import _curl  # noqa: E402
from mam_client.crypto.curl import hash_trits  # noqa: E402
from mam_client.crypto.trits import trits, values  # noqa: E402
from mam_client.mam import ChannelState, create_message, parse_message  # noqa: E402


def main() -> None:
    assert _curl.__file__.endswith("aarch64-linux-gnu.so"), f"not the aarch64 build: {_curl.__file__}"
    vectors = json.load(open(f"{REPO}/tests/data/mam-v0-vectors.json", encoding="utf-8"))
    count = 0
    for ch in vectors["channels"] + vectors["merkle_channels"]:
        state = ChannelState.from_json(dict(ch["initial_state"], seed=ch["seed"], mode=ch["mode"],
                                            security=ch["security"], sideKey=ch["sideKey_input"]))
        for m in ch["messages"]:
            made = create_message(state, m["message_trytes"])
            assert (made.payload, made.root, made.address, made.next_root) == (
                m["payload"], m["root"], m["address"], m["nextRoot"]), f"{ch['id']} message {m['n']}"
            parsed = parse_message(m["payload"], m["root"], ch["sideKey_input"])
            assert (parsed.message, parsed.next_root) == (m["parse"]["message_trytes"], m["parse"]["nextRoot"])
            count += 1
    tx = trits("SCBARMCHECK" + "9" * (2673 - 11))
    started = time.time()
    nonce, tried = _curl.pow_search(tx, 9, 2)
    assert all(t == 0 for t in values(hash_trits(tx[:-81] + nonce, 81))[-9:]), "nonce misses MWM 9"
    print(json.dumps({"machine": platform.machine(), "vector_messages_identical": count, "pow_mwm9_ok": True,
                      "pow_hashes_tried": tried, "pow_seconds_under_emulation": round(time.time() - started, 2)}))


if __name__ == "__main__":
    main()
