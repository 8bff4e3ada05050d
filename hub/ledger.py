"""Where the money went, from the contract's events: each period's bills, each holder's payments and deposits.

The hub's database knows what it settled (periods, consumption, the settle transaction) but not what the contract
made of it: the bills (a bill paid from a deposit leaves no record but its event), the payments and deposits the
households sent from their own wallets, a repossession. So these are read from the chain's event logs
(`eth_getLogs`, no gas), for `scb export bills` and the dashboard's household page alike, through the
SolarProperty facade's own log decoding (`SolarProperty.event_logs`: no web3, whose pages a forked dashboard
would otherwise copy; issue 16).

Why by event name and argument name, `.get` on each: the contract is being extended (new fields, new events), and
an older or newer artifact must still show what it has. An event the contract's ABI (that of its version) does
not have is simply absent (no rows); an argument it lacks is None.

Errors are the chain client's: unreachable is `ChainUnavailable` (a TransportError), a missing contract is
`NoContract` (a ChainRefused); callers show them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from settlement.abi import to_checksum_address
from settlement.chain import ChainClient
from settlement.logscan import DeploymentStore
from settlement.solar_property import SolarProperty
from settlement.system import SystemRef

#: The money events shown, and the argument that names the holder (each is filtered by it).
PAYMENT_EVENTS = {"Paid": "holder", "Deposited": "holder", "DepositWithdrawn": "holder", "Repossessed": "holder",
                  "ShareOwned": "holder"}


@dataclass(frozen=True)
class Bill:
    """One holder's bill of one settled period, as the contract's `Billed` event says (wei)."""

    period_id: int
    index: int  # holder order
    amount_wei: int
    unpaid_wei: int  # the part the deposit did not cover (it became debt)
    tx_hash: str
    block_number: int

    @property
    def from_deposit_wei(self) -> int:
        return self.amount_wei - self.unpaid_wei


class StoredDeployments(DeploymentStore):
    """The contract's deployment block as the settlement stored it in the hub's database (where log scans start,
    settlement.logscan), for readers: a block found by a reader is kept in its client only, because readers such
    as the dashboard open the database read-only."""

    def save(self, chain_id: int, address: str, block: int, tx_hash: str | None = None) -> None:
        return None


def reader_client(client: ChainClient, factory: Any) -> ChainClient:
    """`client` with its log scans starting at the stored deployment block (not found again by a search)."""
    client.deployment_store = StoredDeployments(factory)
    return client


def _contract(client: ChainClient, system: SystemRef) -> SolarProperty:
    return SolarProperty(client, system.contract, system.system_id)


def bills(client: ChainClient, system: SystemRef) -> dict[int, list[Bill]]:
    """period id -> the bills of that period in holder order (periods whose settlement billed anything)."""
    out: dict[int, list[Bill]] = {}
    for event in _contract(client, system).event_logs("Billed"):
        args = event.args
        period = int(args.get("periodId", 0))
        amounts = [int(a) for a in args.get("amounts") or []]
        unpaid = [int(u) for u in args.get("unpaid") or []] + [0] * len(amounts)
        out[period] = [Bill(period, i, amount, unpaid[i], event.tx_hash, event.block_number)
                       for i, amount in enumerate(amounts)]
    return out


def payments(client: ChainClient, system: SystemRef, account: str) -> list[dict[str, Any]]:
    """The holder's payments, deposits, withdrawals, repossession and ownership, oldest first: each with its event
    name, its arguments in wei (decimal strings: they exceed JavaScript's exact integers), transaction, block and
    the block's time (chain time, which follows community time on the demo chain)."""
    account = to_checksum_address(account)
    chain = _contract(client, system)
    found = []
    for name, holder_arg in PAYMENT_EVENTS.items():
        for event in chain.event_logs(name, {holder_arg: account}):
            args = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                    for k, v in event.args.items() if k not in ("systemId", holder_arg)}
            found.append({"event": name, "args": args, "tx": event.tx_hash, "block": event.block_number,
                          "log_index": event.log_index})
    found.sort(key=lambda e: (e["block"], e["log_index"]))
    times: dict[int, int] = {}
    for e in found:
        if e["block"] not in times:
            times[e["block"]] = client.block_timestamp(e["block"])
        e["time_s"] = times[e["block"]]
    return found
