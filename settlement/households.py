"""The demo households: the embedded demo's holders paying (or not) from their own development accounts.

Why this exists: on the embedded defaults nobody but the hub touches the chain, so bills pile up, nobody is ever
out of good standing and nothing is repossessed: the half of the mission where money follows energy never shows.
Here each demo household acts on the chain as its owner would from a wallet, with its own anvil account (the
development accounts the demo system registered, `settlement.system.demo_holders`), by role, in holder order:

    deposit   keeps a deposit topped up (`deposit`), so each settlement draws its bill from it
    prompt    pays each bill as soon as it is settled, plus an instalment of its share's value (`pay`): its
              equity grows period by period until it owns its share
    late      pays its bills late but within grace: once the oldest unpaid bill is half its grace period old
    never     never pays: it falls out of good standing when its first bill is past due, the supply decision
              turns its portion to the grid, and `REPOSSESS_AFTER_S` later the community's treasurer (development
              account 9, which holds no share) calls `repossess`, which anyone may

(more households repeat the roles in that order). Each step decides from the chain's current state alone (and
community time), so it keeps no state of its own and a restart or kill -9 at any moment changes nothing.

**Only on the embedded local development chain, with the demo accounts.** `check_demo` refuses (ConfigError)
any chain that is not a local anvil (chain 31337 answering as anvil), a system this hub did not register as the
demo, and holders that are not the development accounts: the keys of these accounts are public knowledge, and
spending from them anywhere else would be spending other people's money, or failing to.

It runs as its own process, `scb demo-households` (in `scb run`'s plan on the embedded chain only), under
scb.loop's failure policy (heartbeat process "demo-households", loop "households"). Why a process of its own and
not a job of `scb settlement`: a household is a separate actor with its own wallet, and its transactions
(their gas estimates, their receipts) must never delay the hub's settlements and supply checks, which run on one
worker thread; and a fault here must not take the settlement down. Before each transaction the chain's clock is
moved to community time (`settlement.clock.ChainClock`, as the settlement does), so a late payment lands before
its due time and a repossession after it, in community time.
"""
from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from settlement.chain import ChainClient, dev_account
from settlement.clock import ChainClock
from settlement.signing import Signer
from settlement.solar_property import PAYING, HolderInfo, SolarProperty
from settlement.system import SystemRef, newest_system
from scb.errors import ConfigError
from scb.loop import Guard, Heartbeat, Waiting

log = logging.getLogger("settlement.households")

PROCESS = "demo-households"
LOOP = "households"
DEPOSIT, PROMPT, LATE, NEVER = "deposit", "prompt", "late", "never"
ROLES = (DEPOSIT, PROMPT, LATE, NEVER)
#: Development account that repossesses (it holds no share). Why a separate account: the hub account's nonces
#: belong to the settlement process, and a holder repossessing a neighbour would blur the roles on the page.
TREASURER_INDEX = 9
#: Real seconds between steps. Why 2 s: at the demo's 60x clock that is two community minutes, well inside a
#: period (an hour) and the grace period (hours), so every action happens when its rule says, not a period late.
INTERVAL_S = 2.0
#: The deposit household tops up to this (0.01 ether: about twenty of its bills at the demo price) whenever its
#: deposit fell below half of it.
DEPOSIT_TARGET_WEI = 10**16
#: The prompt payer's instalment with each bill, in basis points of its share's value (2%: it owns its share after
#: about fifty periods, under an hour of the demo).
INSTALMENT_BPS = 200
#: Community seconds a household stays out of good standing before the treasurer repossesses its share. Why not at
#: once: the page should show the holder out of good standing and its portion sold to the grid first.
REPOSSESS_AFTER_S = 3600


def role_of(index: int) -> str:
    """The role of the holder at `index` (holder order)."""
    return ROLES[index % len(ROLES)]


@dataclass(frozen=True)
class Action:
    """One transaction a household makes: `kind` is deposit, pay or repossess."""

    party: str
    kind: str
    value_wei: int
    reason: str
    target: str | None = None  # the holder repossessed


def decide(role: str, party: str, holder: HolderInfo, now_s: int, grace_s: int) -> Action | None:
    """What household `party` (role `role`) does now, given its standing `holder` at community time `now_s`: pure,
    so the rules are tested without a chain."""
    if holder.status != PAYING:
        return None  # owns its share, or lost it: nothing more to pay
    if role == DEPOSIT:
        if holder.prepaid_wei < DEPOSIT_TARGET_WEI // 2 or holder.debt_wei > 0:
            value = DEPOSIT_TARGET_WEI - holder.prepaid_wei + holder.debt_wei
            return Action(party, "deposit", value, f"deposit {holder.prepaid_wei} wei is low: topping up")
        return None
    if role == PROMPT:
        if holder.debt_wei > 0:
            left = max(0, holder.holding_value_wei - holder.equity_paid_wei)
            instalment = min(left, holder.holding_value_wei * INSTALMENT_BPS // 10_000)
            return Action(party, "pay", holder.debt_wei + instalment,
                          f"paying the bill ({holder.debt_wei} wei) and {instalment} wei toward its share")
        return None
    if role == LATE:
        billed_at = holder.next_due_time - grace_s  # when the oldest unpaid bill was settled
        if holder.debt_wei > 0 and now_s >= billed_at + grace_s // 2 and now_s < holder.next_due_time:
            return Action(party, "pay", holder.debt_wei, f"paying late ({holder.debt_wei} wei, due "
                                                         f"{holder.next_due_time}), within grace")
        return None
    if role == NEVER:
        if holder.debt_wei > 0 and holder.next_due_time and now_s > holder.next_due_time + REPOSSESS_AFTER_S:
            return Action(party, "repossess", 0, f"out of good standing since {holder.next_due_time}: the treasurer "
                                                 "repossesses the share", target=holder.account)
        return None
    raise ValueError(f"unknown role {role!r}")


def check_demo(client: ChainClient, system: SystemRef) -> dict[str, Signer]:
    """party -> the development account that holds its share; ConfigError unless the chain is the local
    development chain and the system the demo with the development accounts (see the module docstring)."""
    if not client.is_dev_chain():
        raise ConfigError(f"the demo households act only on the embedded local development chain (anvil, chain "
                          f"31337); the node at {client.rpc_url} is not one")
    if not system.demo:
        raise ConfigError(f"system {system.system_id} on {system.contract} was not registered by this hub as the "
                          "demo: the demo households do not act on it")
    accounts = {dev_account(i).address.lower(): i for i in range(1, TREASURER_INDEX)}
    out: dict[str, Signer] = {}
    for party, address in system.holders.items():
        index = accounts.get(address.lower())
        if index is None:
            raise ConfigError(f"holder {party} ({address}) is not one of the development accounts 1..8: the demo "
                              "households act only for the demo's own accounts")
        out[party] = dev_account(index)
    return out


class DemoHouseholds:
    """One step per call: read every holder's standing, make at most one transaction per household.

    `client_for()` builds a chain client (a new one per step: a chain that restarted is found again); `clock`
    gives community time (`now_ms()`, None before the energy manager ever ran).
    """

    def __init__(self, factory: sessionmaker[Session], client_for: Callable[[], ChainClient], clock: Any) -> None:
        self.factory = factory
        self.client_for = client_for
        self.clock = clock
        #: the actions taken, newest last (for tests and the log)
        self.done: list[Action] = []

    def step(self) -> Waiting | None:
        system = newest_system(self.factory)
        if system is None:
            return Waiting("no demo system yet: the settlement has not registered it")
        now_ms = self.clock.now_ms()
        if now_ms is None:
            return Waiting("no community time yet: the energy manager has not started the clock")
        client = self.client_for()
        wallets = check_demo(client, system)
        view = SolarProperty(client, system.contract, system.system_id).snapshot()
        grace = view.system_info().grace_period_s
        party_of = system.party_of
        actions = []
        for index, holder in enumerate(view.holders()):
            party = party_of.get(holder.account.lower())
            if party is None:
                continue
            action = decide(role_of(index), party, holder, now_ms // 1000, grace)
            if action is not None:
                actions.append(action)
        for action in actions:
            self._send(client, system, wallets, action, now_ms // 1000)
        return None

    def _send(self, client: ChainClient, system: SystemRef, wallets: dict[str, Signer], action: Action,
              now_s: int) -> None:
        contract = SolarProperty(client, system.contract, system.system_id)
        ChainClock(client, True).before_transaction(now_s)  # the transaction lands at community time
        if action.kind == "repossess":
            client.account = dev_account(TREASURER_INDEX)
            call = contract.transaction("repossess", system.system_id, action.target)
        else:
            client.account = wallets[action.party]
            call = contract.transaction(action.kind, system.system_id)
        receipt = client.transact(call, f"{action.kind} for {action.party}", value=action.value_wei)
        log.info("household %s: %s (%s wei) in transaction 0x%s: %s", action.party, action.kind, action.value_wei,
                 bytes(receipt["transactionHash"]).hex(), action.reason)
        self.done.append(action)


# ------------------------------------------------------------------------------------------------ the process


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(PROCESS, help="the demo households paying (or not) from their own accounts: embedded local "
                                     "chain only (started by `scb run` there)")
    p.set_defaults(handler=cmd_demo_households)


def run(config: Any, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
    """The loop of `scb demo-households` until `stop`."""
    from energy_manager.settings import load_energy_settings
    from settlement.clock import CommunityTime
    from settlement.settings import ethereum_settings
    from scb.db import init_db, make_sessionmaker

    eth = ethereum_settings(config)
    if not eth.embedded:
        raise ConfigError(f"the demo households act only on the embedded local chain, not on ethereum.rpc_url "
                          f"{eth.rpc_url}")
    factory = make_sessionmaker(init_db(config))
    households = DemoHouseholds(factory, lambda: ChainClient(eth), CommunityTime(load_energy_settings(config),
                                                                                 factory))
    failed: list[ConfigError] = []

    def step() -> Waiting | None:
        try:
            return households.step()
        except ConfigError as exc:  # not the demo: end the process with the one-line message (exit 2), no restart
            failed.append(exc)
            stop.set()
            return None

    Guard(LOOP, heartbeat or Heartbeat(config.data_dir, PROCESS), INTERVAL_S).run(step, stop)
    if failed:
        raise failed[0]


def cmd_demo_households(args: argparse.Namespace) -> int:
    import signal

    from scb.config import load_config

    config = load_config(args.config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    log.info("demo households: %s", ", ".join(ROLES))
    run(config, stop)
    return 0
