"""Helpers for driving SolarProperty from tests: deploy, transact, decode custom errors, move time.

Works the same on web3's in-process EthereumTesterProvider and on a real anvil node, so the same scenario
can run on both (tests/contracts/test_anvil.py).
"""
from __future__ import annotations

import ast
import json
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

from eth_abi import decode as abi_decode
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from settlement.contract_artifact import load_artifact
from tests.conftest import REPO

TRYTES_A = "A" * 80 + "9"
#: the largest peak powers SolarProperty 2 takes: system (uint32) and holder (20 bits), in W
SYSTEM_PEAK_W = 2**32 - 1
MAX_HOLDER_PEAK_W = 2**20 - 1
TRYTES_B = "SCBCHANNELROOT9" + "B" * 66


def compile_contract(target: str) -> dict[str, Any]:
    """Compile ``FILE:NAME`` (repository-relative) with contracts/compile.js, exactly as the artifact is built."""
    proc = subprocess.run(
        ["node", str(REPO / "contracts" / "compile.js"), "--stdout", target],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


def error_table(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    """selector -> (error name, argument types) for every custom error in an ABI."""
    table: dict[bytes, tuple[str, list[str]]] = {}
    for entry in abi:
        if entry["type"] == "error":
            types = [_canonical_type(i) for i in entry["inputs"]]
            table[keccak(text=f"{entry['name']}({','.join(types)})")[:4]] = (entry["name"], types)
    return table


@dataclass
class Reverted:
    """A decoded revert: the custom error's name and its arguments."""

    name: str
    args: tuple[Any, ...]


def _revert_bytes(exc: BaseException) -> bytes:
    """Revert data from web3 (ContractCustomError on a node) or from eth-tester (TransactionFailed with bytes)."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    seen: BaseException | None = exc
    while seen is not None:
        for arg in seen.args:
            if isinstance(arg, (bytes, bytearray)):
                return bytes(arg)
            if isinstance(arg, BaseException) and arg.args and isinstance(arg.args[0], (bytes, bytearray)):
                return bytes(arg.args[0])
            if isinstance(arg, str) and arg.startswith("execution reverted: b"):
                return ast.literal_eval(arg[len("execution reverted: "):])
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no revert data in {exc!r}") from exc


def decode_revert(abi: list[dict[str, Any]], exc: BaseException) -> Reverted:
    raw = _revert_bytes(exc)
    table = error_table(abi)
    if raw[:4] not in table:
        raise AssertionError(f"unknown revert data 0x{raw.hex()}") from exc
    name, types = table[raw[:4]]
    values = abi_decode(types, raw[4:])
    return Reverted(name, tuple(Web3.to_checksum_address(v) if t == "address" else v for t, v in zip(types, values)))


class Solar:
    """A deployed SolarProperty plus the chain it lives on."""

    def __init__(self, w3: Web3, contract: Contract, travel: Callable[[int], None]):
        self.w3 = w3
        self.c = contract
        self.abi = contract.abi
        self._travel = travel

    # -- deployment
    @classmethod
    def deploy(cls, w3: Web3, admin: str, approver: str, travel: Callable[[int], None]) -> "Solar":
        art = load_artifact()
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = factory.constructor(admin, approver).transact({"from": admin})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        return cls(w3, w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"]), travel)

    # -- time
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def set_next_timestamp(self, timestamp: int) -> None:
        """The next transaction (or revert check) runs at exactly ``timestamp``."""
        self._travel(timestamp)

    # -- transactions
    def transact(self, fn_name: str, *args: Any, sender: str, value: int = 0) -> dict[str, Any]:
        fn = getattr(self.c.functions, fn_name)(*args)
        tx_hash = fn.transact({"from": sender, "value": value, "gas": 15_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"{fn_name} failed"
        return receipt

    def reverts(self, fn_name: str, *args: Any, sender: str, value: int = 0) -> Reverted:
        """Send the transaction expecting a revert; return the decoded custom error."""
        fn = getattr(self.c.functions, fn_name)(*args)
        try:
            fn.transact({"from": sender, "value": value})
        except (ContractCustomError, ContractLogicError, TransactionFailed) as exc:
            return decode_revert(self.abi, exc)
        raise AssertionError(f"{fn_name}{args} did not revert")

    def call(self, fn_name: str, *args: Any, sender: str | None = None) -> Any:
        fn = getattr(self.c.functions, fn_name)(*args)
        return fn.call({"from": sender} if sender else {})

    def call_reverts(self, fn_name: str, *args: Any) -> Reverted:
        try:
            getattr(self.c.functions, fn_name)(*args).call()
        except (ContractCustomError, ContractLogicError, TransactionFailed) as exc:
            return decode_revert(self.abi, exc)
        raise AssertionError(f"{fn_name}{args} did not revert")

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return [dict(e["args"]) for e in getattr(self.c.events, name)().process_receipt(receipt, errors=DISCARD)]

    # -- domain helpers
    def register(
        self,
        approver: str,
        holders: list[str],
        shares: list[int],
        *,
        hub: str,
        beneficiary: str,
        price: int = 10**15,
        total_value: int = 10**18,
        grace: int = 7 * 86400,
        channel: str = TRYTES_A,
        peak: int = SYSTEM_PEAK_W,
        holder_peaks: list[int] | None = None,
        fee_bps: int = 0,
    ) -> tuple[int, dict[str, Any]]:
        """Register a system; peaks default to the largest the contract takes (the bounds are tested on their own)."""
        receipt = self.transact(
            "registerSystem",
            (hub, beneficiary, price, total_value, grace, peak, fee_bps),
            channel,
            holders,
            shares,
            holder_peaks if holder_peaks is not None else [MAX_HOLDER_PEAK_W] * len(holders),
            sender=approver,
        )
        (ev,) = self.events(receipt, "SystemRegistered")
        return ev["systemId"], receipt

    def settle(
        self,
        system_id: int,
        period_id: int,
        start: int,
        end: int,
        consumption: list[int],
        *,
        hub: str,
        generation: int = 10_000,
        root: bytes = b"\x11" * 32,
        mam_root: str = TRYTES_B,
        count: int = 96,
    ) -> dict[str, Any]:
        return self.transact(
            "settle", system_id, period_id, start, end, root, mam_root, count, generation, consumption, sender=hub
        )

    def holder(self, system_id: int, account: str) -> dict[str, Any]:
        names = [o["name"] for o in _output_components(self.abi, "holderInfo")]
        return dict(zip(names, self.call("holderInfo", system_id, account)))

    def system(self, system_id: int) -> dict[str, Any]:
        names = [o["name"] for o in _output_components(self.abi, "systemInfo")]
        return dict(zip(names, self.call("systemInfo", system_id)))

    def period(self, system_id: int, period_id: int) -> dict[str, Any]:
        names = [o["name"] for o in _output_components(self.abi, "periodInfo")]
        return dict(zip(names, self.call("periodInfo", system_id, period_id)))

    def withdrawable(self, account: str) -> int:
        return int(self.call("withdrawable", account))

    def balance(self) -> int:
        return int(self.w3.eth.get_balance(self.c.address))


def _output_components(abi: list[dict[str, Any]], fn_name: str) -> list[dict[str, Any]]:
    (entry,) = [e for e in abi if e.get("type") == "function" and e["name"] == fn_name]
    return entry["outputs"][0]["components"]


def eth_tester_travel(tester: Any) -> Callable[[int], None]:
    """Time travel for EthereumTesterProvider: the pending block (next transaction, revert checks) gets ``ts``."""

    def travel(ts: int) -> None:
        tester.time_travel(ts)

    return travel


def anvil_travel(w3: Web3) -> Callable[[int], None]:
    def travel(ts: int) -> None:
        w3.provider.make_request("evm_setNextBlockTimestamp", [ts])

    return travel


class PeriodClock:
    """Settles consecutive one-hour periods of one system, moving chain time past each period's end."""

    def __init__(self, solar: Solar, system_id: int, hub: str, length: int = 3600):
        self.solar = solar
        self.system_id = system_id
        self.hub = hub
        self.length = length
        self.next_id = 1
        self.cursor = solar.now()

    def settle(self, consumption: list[int], generation: int = 10_000, **kwargs: Any) -> dict[str, Any]:
        """Settle the next period; returns the receipt with ``settledAt`` (block time) added."""
        start, end = self.cursor, self.cursor + self.length
        self.solar.set_next_timestamp(max(end, self.solar.now() + 1))
        receipt = self.solar.settle(
            self.system_id, self.next_id, start, end, consumption, hub=self.hub, generation=generation, **kwargs
        )
        self.next_id += 1
        self.cursor = end
        return dict(receipt, settledAt=int(self.solar.w3.eth.get_block(receipt["blockNumber"])["timestamp"]))


def expected_bill(consumed_wh: int, generation_wh: int, share_bps: int, price_per_kwh: int) -> int:
    """The bill as the issue states it, in exact rationals: min(consumed, generation x share) x price, floored."""
    from fractions import Fraction
    import math

    portion_wh = Fraction(generation_wh * share_bps, 10_000)
    return math.floor(min(Fraction(consumed_wh), portion_wh) * price_per_kwh / 1000)


def expected_holding(total_value: int, share_bps: int) -> int:
    """A holding's value: the share of the total value, rounded up (docs/contract.md)."""
    return -(-total_value * share_bps // 10_000)
