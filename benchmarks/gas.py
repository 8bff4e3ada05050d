#!/usr/bin/env python3
"""Gas used by SolarProperty, measured on web3's in-process EthereumTesterProvider (py-evm, Cancun/Prague rules).

    .venv/bin/python benchmarks/gas.py            # table, then one JSON object
    .venv/bin/python benchmarks/gas.py --json     # the JSON object only

Why these numbers: the hub settles every period, so settle must stay cheap as holders grow and must not grow
with the number of readings (only the Merkle root goes on chain). The reference, measured in the same run, is
contracts/bench/BareAnchor.sol: one storage slot and one event, the least a contract can do to anchor a root
(the issue's "26-48k gas on a bare contract"); settle is also reported as a multiple of it. SolarProperty 2 (the
committed artifact) is measured; version 1's figures are in docs/contract.md "Gas".

Settle is measured in steady state (the second period of a system, so one-time zero-to-non-zero writes of the
first period are excluded) in three shapes:
  * prepaid: every holder's deposit covers the bill - the designed everyday path (one slot per holder);
  * debt:    no deposits, every bill becomes a new debt-ledger entry - the worst case; entries are packed two
             per storage word, so alternate periods either share the previous entry's word or open a new one;
  * owned:   every share owned outright, nothing billed - anchoring plus the loop over holders.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from eth_utils import keccak  # noqa: E402
from web3 import EthereumTesterProvider, Web3  # noqa: E402

from settlement.contract_artifact import load_artifact  # noqa: E402

HOLDER_COUNTS = (1, 8, 32, 64)
PRICE = 10**15  # wei per kWh
TOTAL = 10**18  # wei
GRACE = 86400
CHANNEL = "SCB9GAS9BENCHMARK" + "9" * 64
MAM_ROOT = "A" * 81
ROOT = keccak(b"period root")
SYSTEM_PEAK_W = 2**32 - 1  # the bounds are checked on every settle whatever their values
HOLDER_PEAK_W = 2**20 - 1
FEE_BPS = 500


class Chain:
    """A fresh py-evm chain with enough funded accounts for 64 holders."""

    def __init__(self, extra_accounts: int):
        provider = EthereumTesterProvider()
        self.tester = provider.ethereum_tester
        self.w3 = Web3(provider)
        base = self.w3.eth.accounts
        self.admin, self.approver, self.hub, self.beneficiary, self.payer = base[:5]
        self.holders: list[str] = []
        for i in range(extra_accounts):
            key = keccak(text=f"scb gas benchmark holder {i}")
            address = self.tester.add_account("0x" + key.hex())
            self.w3.eth.send_transaction({"from": self.payer, "to": address, "value": 10 * 10**18})
            self.holders.append(Web3.to_checksum_address(address))
        art = load_artifact()
        self.abi = art["abi"]
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self._wait(factory.constructor(self.admin, self.approver).transact({"from": self.admin}))
        self.deploy_gas = receipt["gasUsed"]
        self.c = self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])
        self.cursor = self.now()

    def _wait(self, tx: bytes) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        return receipt

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def gas(self, fn: str, *args: Any, sender: str, value: int = 0) -> int:
        tx = getattr(self.c.functions, fn)(*args).transact({"from": sender, "value": value, "gas": 20_000_000})
        return int(self._wait(tx)["gasUsed"])

    def register(self, n: int) -> tuple[int, int]:
        holders = self.holders[:n]
        shares = [10_000 // n] * n
        shares[-1] += 10_000 - sum(shares)
        before = int(self.c.functions.systemCount().call())
        terms = (self.hub, self.beneficiary, PRICE, TOTAL, GRACE, SYSTEM_PEAK_W, FEE_BPS)
        gas = self.gas("registerSystem", terms, CHANNEL, holders, shares, [HOLDER_PEAK_W] * n, sender=self.approver)
        self.cursor = max(self.cursor, self.now())  # no period may start before the registration
        return before + 1, gas

    def settle(self, system_id: int, period_id: int, n: int, count: int = 96) -> int:
        return int(self.settle_receipt(system_id, period_id, n, count)["gasUsed"])

    def settle_receipt(self, system_id: int, period_id: int, n: int, count: int = 96) -> Any:
        start, end = self.cursor, self.cursor + 900
        self.tester.time_travel(max(end + 1, self.now() + 1))
        self.cursor = end
        tx = self.c.functions.settle(system_id, period_id, start, end, ROOT, MAM_ROOT, count, 1_000_000,
                                     [1_000] * n).transact({"from": self.hub, "gas": 20_000_000})
        return self._wait(tx)

    def billed(self, receipt: Any) -> tuple[list[int], list[int]]:
        from web3.logs import DISCARD

        (ev,) = self.c.events.Billed().process_receipt(receipt, errors=DISCARD)
        return list(ev["args"]["amounts"]), list(ev["args"]["unpaid"])

    def info(self, system_id: int, holder: str) -> dict[str, Any]:
        names = [o["name"] for o in next(e for e in self.abi if e.get("name") == "holderInfo")["outputs"][0]["components"]]
        return dict(zip(names, self.c.functions.holderInfo(system_id, holder).call()))

    def holding(self, system_id: int, holder: str) -> int:
        """What the holder must still pay to own the share outright: open debt plus remaining holding value."""
        info = self.info(system_id, holder)
        return int(info["debt"] + info["holdingValue"] - info["equityPaid"])


def bare_anchor_reference(chain: Chain) -> int:
    """Gas of anchoring one more root with contracts/bench/BareAnchor.sol (compiled like the artifact)."""
    proc = subprocess.run(
        ["node", str(REPO / "contracts" / "compile.js"), "--stdout", "contracts/bench/BareAnchor.sol:BareAnchor"],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    art = json.loads(proc.stdout)
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    address = chain._wait(factory.constructor().transact({"from": chain.admin}))["contractAddress"]
    bare = chain.w3.eth.contract(address=address, abi=art["abi"])
    chain._wait(bare.functions.anchor(1, ROOT).transact({"from": chain.hub}))
    return int(chain._wait(bare.functions.anchor(2, ROOT).transact({"from": chain.hub}))["gasUsed"])


def measure() -> dict[str, Any]:
    chain = Chain(max(HOLDER_COUNTS))
    out: dict[str, Any] = {"deploy": chain.deploy_gas, "registerSystem": {}, "settle": {"prepaid": {}, "debt": {}, "debt, new ledger word": {}, "owned": {}}}
    out["reference_bare_anchor"] = bare_anchor_reference(chain)

    for n in HOLDER_COUNTS:
        holders = chain.holders[:n]
        # prepaid: deposits cover every bill
        system, out["registerSystem"][n] = chain.register(n)
        for h in holders:
            chain.gas("deposit", system, sender=h, value=10**17)
        chain.settle(system, 1, n)
        out["settle"]["prepaid"][n] = chain.settle(system, 2, n)
        # debt: every bill becomes a ledger entry; entries are packed two per word, so alternately an entry
        # shares the word of the previous one (period 2) or opens a new word (period 3)
        system, _ = chain.register(n)
        chain.settle(system, 1, n)
        out["settle"]["debt"][n] = chain.settle(system, 2, n)
        out["settle"]["debt, new ledger word"][n] = chain.settle(system, 3, n)
        # owned: nothing to bill
        system, _ = chain.register(n)
        for h in holders:
            chain.gas("pay", system, sender=h, value=chain.holding(system, h))
        chain.settle(system, 1, n)
        out["settle"]["owned"][n] = chain.settle(system, 2, n)
        if n == 1:
            out["settle_reading_count"] = {
                "1 reading": chain.settle(system, 3, n, count=1),
                "10^9 readings": chain.settle(system, 4, n, count=10**9),
            }

    # single operations on an 8-holder system in steady state
    system, _ = chain.register(8)
    h = chain.holders[:8]
    chain.gas("deposit", system, sender=h[0], value=10**16)
    ops: dict[str, int] = {}
    ops["deposit (top-up, no debt)"] = chain.gas("deposit", system, sender=h[0], value=10**16)
    chain.settle(system, 1, 8)
    chain.settle(system, 2, 8)
    ops["deposit (clears debt, rest prepaid)"] = chain.gas("deposit", system, sender=h[1], value=10**17)
    ops["pay (clears debt, rest to equity)"] = chain.gas("pay", system, sender=h[2], value=10**16)
    ops["pay (clears debt, rest completes ownership)"] = chain.gas("pay", system, sender=h[3], value=chain.holding(system, h[3]))
    assert chain.info(system, h[3])["status"] == 2  # OWNED
    ops["withdrawDeposit"] = chain.gas("withdrawDeposit", system, 10**15, sender=h[0])
    chain.settle(system, 3, 8)  # new bills: h[2] (equity paid) and h[4] (nothing paid) owe again
    chain.tester.time_travel(chain.now() + GRACE + 10)
    ops["repossess (equity, debt and fee)"] = chain.gas("repossess", system, h[2], sender=chain.payer)
    ops["repossess (no equity)"] = chain.gas("repossess", system, h[4], sender=chain.payer)
    ops["assignShare (new holder)"] = chain.gas("assignShare", system, chain.holders[20], 1000, HOLDER_PEAK_W,
                                                sender=chain.approver)
    ops["setBeneficiary"] = chain.gas("setBeneficiary", system, chain.beneficiary, sender=chain.approver)
    receipt = chain.settle_receipt(system, 4, 9)  # the assigned holder is billed too
    amounts, unpaid = chain.billed(receipt)
    ops["cancelPeriod (9 holders, 8 billed)"] = chain.gas("cancelPeriod", system, 4, amounts, unpaid,
                                                           sender=chain.approver)
    ops["settle again (correction, 9 holders)"] = chain.gas(
        "settle", system, 4, chain.cursor - 900, chain.cursor, ROOT, MAM_ROOT, 96, 1_000_000, [1_000] * 9,
        sender=chain.hub)
    ops["withdraw (beneficiary)"] = chain.gas("withdraw", sender=chain.beneficiary)
    out["operations"] = ops

    ref = out["reference_bare_anchor"]
    out["settle_prepaid_per_extra_holder"] = round((out["settle"]["prepaid"][64] - out["settle"]["prepaid"][1]) / 63)
    out["settle_debt_per_extra_holder"] = round(
        (out["settle"]["debt"][64] + out["settle"]["debt, new ledger word"][64]
         - out["settle"]["debt"][1] - out["settle"]["debt, new ledger word"][1]) / 126
    )
    out["settle_prepaid_1_holder_x_reference"] = round(out["settle"]["prepaid"][1] / ref, 2)
    return out


def table(m: dict[str, Any]) -> str:
    ref = m["reference_bare_anchor"]
    rows = [("operation", "gas", "x bare anchor")]
    rows.append(("reference: bare anchor (1 slot + event)", f"{ref:,}", "1.00"))
    rows.append(("deploy SolarProperty", f"{m['deploy']:,}", ""))
    for n, g in m["registerSystem"].items():
        rows.append((f"registerSystem, {n} holders", f"{g:,}", ""))
    for shape in m["settle"]:
        for n, g in m["settle"][shape].items():
            rows.append((f"settle, {n} holders, {shape}", f"{g:,}", f"{g / ref:.2f}"))
    for label, g in m["settle_reading_count"].items():
        rows.append((f"settle, 1 holder owned, {label}", f"{g:,}", f"{g / ref:.2f}"))
    for label, g in m["operations"].items():
        rows.append((label, f"{g:,}", ""))
    rows.append(("settle per extra holder, prepaid", f"{m['settle_prepaid_per_extra_holder']:,}", ""))
    rows.append(("settle per extra holder, debt (average of both)", f"{m['settle_debt_per_extra_holder']:,}", ""))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {r[0]:<{width}} | {r[1]:>10} | {r[2]:>13} |" for r in rows]
    lines.insert(1, f"|{'-' * (width + 2)}|{'-' * 11}:|{'-' * 14}:|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    m = measure()
    if not args.json:
        print(table(m))
        print()
    print(json.dumps(m, indent=None if args.json else 2, default=str))


if __name__ == "__main__":
    main()
