"""The golden proof files in tests/settlement/data and the chain they are anchored on.

`build_chain(url)` replays, on a fresh anvil, a small fixed history: deploy SolarProperty version 1 (the committed
contracts/build/SolarProperty.v1.json: the golden files also prove that `scb verify` still reads a system that
stays on version 1), register a system with
two holders and a fixed MAM channel, settle two periods of fixed readings. Every transaction is signed with fixed
nonce, gas and gas price, so the contract address and the transaction hashes are the same on every fresh anvil;
the committed proof files refer to them. It deliberately uses plain web3 calls and the codec, not the hub's
settlement job, so the golden files do not merely restate the code they test.

Regenerate (only when the proof format changes): ``python -m tests.settlement.golden`` (starts its own anvil).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from energy_manager.message import encode_window
from energy_manager.reading import Reading
from mam_client.crypto.trits import ascii_to_trytes
from mam_client.mam import channel_root, create_channel, create_message
from settlement.chain import dev_account
from settlement.contract_artifact import load_artifact
from settlement.merkle import build_reading_tree, reading_proof, to_hex

DATA = Path(__file__).resolve().parent / "data"
SEED = "SCBGOLDENSEED" + "9" * 68
SIDE_KEY = "SCBGOLDENSIDEKEY" + "A" * 65
HUB = "golden-hub"
T0 = 1_893_456_000  # 2030-01-01T00:00:00Z
PERIOD = 3600
GAS_PRICE = 3 * 10**9


def readings(period: int) -> list[Reading]:
    """Three readings of period `period` (0-based), 10 minutes into it, with fixed salts."""
    ts = (T0 + period * PERIOD + 600) * 1000
    salt = f"{period:02x}" * 16
    return [
        Reading(hub=HUB, meter="pv", party="system", circuit="generation", ts_ms=ts, register_wh=5000 + 700 * period,
                power_w=2400, seq=period + 1, salt=salt),
        Reading(hub=HUB, meter="h1", party="h1", circuit="consumption", ts_ms=ts, register_wh=800 + 90 * period,
                power_w=310, seq=period + 1, salt=salt[::-1]),
        Reading(hub=HUB, meter="h2", party="h2", circuit="consumption", ts_ms=ts, register_wh=600 + 120 * period,
                power_w=450, seq=period + 1, salt="ab" * 16),
    ]


def _send(w3: Web3, account: Any, tx: dict[str, Any]) -> dict[str, Any]:
    signed = account.sign_transaction({**tx, "gasPrice": GAS_PRICE, "chainId": 31337,
                                       "nonce": w3.eth.get_transaction_count(account.address)})
    w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(signed.hash)
    assert receipt["status"] == 1, tx
    return dict(receipt)


def build_chain(url: str) -> dict[str, Any]:
    """Replay the golden history on the fresh anvil at `url`; returns what the proof files are made of."""
    w3 = Web3(Web3.HTTPProvider(url))
    hub = Account.from_key(dev_account(0).key)
    h1, h2 = dev_account(1).address, dev_account(2).address
    art = load_artifact(1)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    deploy = factory.constructor(hub.address, hub.address).build_transaction(
        {"from": hub.address, "gas": 6_000_000, "gasPrice": GAS_PRICE, "nonce": 0})
    contract_address = _send(w3, hub, {k: deploy[k] for k in ("data", "gas")})["contractAddress"]
    c = w3.eth.contract(address=contract_address, abi=art["abi"])

    state = create_channel(SEED, "restricted", side_key=SIDE_KEY, security=1)
    first_root = channel_root(state)
    register = c.functions.registerSystem(hub.address, hub.address, 10**15, 10**18, 86_400, first_root, [h1, h2],
                                          [5000, 5000]).build_transaction(
        {"from": hub.address, "gas": 1_000_000, "gasPrice": GAS_PRICE, "nonce": 1})
    _send(w3, hub, {"to": contract_address, "data": register["data"], "gas": 1_000_000})

    periods = []
    for p in range(2):
        rs = readings(p)
        ((body, _),) = encode_window(HUB, rs[0].ts_ms - 600_000, rs[0].ts_ms + 300_000, rs, 16_000)
        message = create_message(state, ascii_to_trytes(body.decode("ascii")))
        tree = build_reading_tree([r.digest() for r in rs])
        start, end = T0 + p * PERIOD, T0 + (p + 1) * PERIOD
        w3.provider.make_request("evm_setNextBlockTimestamp", [end + 60])  # type: ignore[arg-type]
        settle = c.functions.settle(1, p + 1, start, end, tree.root, message.root, len(rs), 700,
                                    [90, 120]).build_transaction(
            {"from": hub.address, "gas": 1_000_000, "gasPrice": GAS_PRICE, "nonce": 2 + p})
        receipt = _send(w3, hub, {"to": contract_address, "data": settle["data"], "gas": 1_000_000})
        periods.append({"readings": rs, "message": message, "tree": tree, "start": start, "end": end,
                        "tx": "0x" + bytes(receipt["transactionHash"]).hex(), "block": receipt["blockNumber"]})
    return {"contract": contract_address, "channel_root": first_root, "periods": periods}


def proof_file(chain: dict[str, Any], period: int, index: int, reading: Reading | None = None) -> dict[str, Any]:
    """The proof file of reading `index` of period `period` (0-based), as `scb proof export` writes it.

    `reading` replaces the reading (its digest and leaf follow it) while the Merkle path and the MAM message stay
    those of reading `index`: a forged reading whose hashes were recomputed.
    """
    from settlement.verify import build_proof_file

    p = chain["periods"][period]
    reading = reading or p["readings"][index]
    message = p["message"]
    return build_proof_file(
        reading_id=period * 10 + index + 1, canonical=reading.canonical(), digest=reading.digest().hex(),
        proof=reading_proof(p["tree"], index), root=to_hex(p["tree"].root), late=False, chain_id=31337,
        contract=chain["contract"], system_id=1, period_id=period + 1, start_s=p["start"], end_s=p["end"],
        tx_hash=p["tx"], block_number=p["block"], channel_root=chain["channel_root"], mode="restricted",
        mam_root=message.root, address=message.address, payload=message.payload, bundle_hash=None,
        period_mam_root=message.root)


def golden_files(chain: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> proof file: one valid file and one invalid file per way a proof can be wrong."""
    valid = proof_file(chain, 0, 1)
    tampered = copy.deepcopy(valid)  # h1's register edited, digest left as anchored
    tampered["reading"]["canonical"] = tampered["reading"]["canonical"].replace('"register_wh":800',
                                                                                '"register_wh":700')
    wrong_root = copy.deepcopy(valid)  # the proof claims another root than the chain holds
    wrong_root["merkle"]["root"] = to_hex(chain["periods"][1]["tree"].root)
    other_period = copy.deepcopy(valid)  # a period-1 proof presented as one of period 2
    other_period["chain"]["period_id"] = 2
    other_chain = copy.deepcopy(valid)  # anchored on (claims) mainnet
    other_chain["chain"]["chain_id"] = 1
    # h1's register edited and its digest and leaf recomputed: consistent in itself, but not the anchored leaf
    forged_leaf = proof_file(chain, 0, 1, dataclasses.replace(chain["periods"][0]["readings"][1], register_wh=700))
    tampered_path = copy.deepcopy(valid)  # one sibling of the Merkle path changed (its last hex digit)
    sibling = tampered_path["merkle"]["proof"][0]
    tampered_path["merkle"]["proof"][0] = sibling[:-1] + ("0" if sibling[-1] != "0" else "1")
    tampered_payload = copy.deepcopy(valid)  # one tryte of the signed (masked) MAM payload changed
    payload = tampered_payload["mam"]["payload"]
    tampered_payload["mam"]["payload"] = payload[:500] + ("A" if payload[500] != "A" else "B") + payload[501:]
    return {"valid.json": valid, "valid-period2.json": proof_file(chain, 1, 2), "tampered-reading.json": tampered,
            "wrong-root.json": wrong_root, "other-period.json": other_period, "other-chain.json": other_chain,
            "tampered-leaf.json": forged_leaf, "tampered-path.json": tampered_path,
            "tampered-payload.json": tampered_payload}


def main() -> None:
    from tests.settlement.conftest import start_anvil

    node = start_anvil()
    try:
        chain = build_chain(node.url)
    finally:
        node.stop()
    DATA.mkdir(exist_ok=True)
    for name, data in golden_files(chain).items():
        (DATA / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(golden_files(chain))} proof files to {DATA}")


if __name__ == "__main__":
    main()
