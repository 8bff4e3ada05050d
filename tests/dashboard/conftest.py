"""Fixtures for the dashboard tests: one hub database filled by the real components, served by the real app.

The hub is the settlement tests' in-process hub (tests/settlement/conftest.py): the energy monitor samples the
simulated community into a temporary database, the publisher attaches MAM messages to an in-memory tangle, and the
settler settles periods on a real anvil. On top of that, holders act as in the supply tests: h1 prepays, h2 pays
its bill, h3 does not and falls out of good standing, so the page has every kind of standing to show. Built once
per session (about ten seconds) and shared by the API tests and the browser test.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.data import open_read_database
from dashboard.settings import DashboardSettings, dashboard_settings
from mam_client.models import OutboxMessage
from settlement.chain import dev_account
from settlement.clock import ChainClock
from settlement.models import SETTLED, SettlementPeriod
from settlement.supply import LoggingActuator, SupplyWatcher
from tests.conftest import free_port
from tests.settlement.conftest import Anvil, Hub, make_hub, start_anvil
from tests.web3_reference import contract_of

#: 2030-06-21T10:00:00Z: midsummer morning, so the panels produce and the bills are not zero
SUMMER_MS = 1_908_266_400_000
HOUR_MS = 3_600_000


@dataclass
class Filled:
    """The filled hub and what the tests need to know about it."""

    hub: Hub
    anvil: Anvil
    settled_addresses: list[str]  # messages whose readings are all in settled periods
    open_addresses: list[str]  # attached messages whose period is not settled yet


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    anvil = start_anvil()
    try:
        hub = make_hub(tmp_path_factory.mktemp("dashboard-hub"), anvil.url, SUMMER_MS)
        c = contract_of(hub.client, hub.system.contract)
        h1, h2 = dev_account(1).address, dev_account(2).address
        c.functions.deposit(1).transact({"from": h1, "value": 10**17})  # h1 prepays
        watcher = SupplyWatcher(hub.factory, hub.client, hub.system, LoggingActuator(), hub.clock,
                                ChainClock(hub.client, True))
        hub.run_until(SUMMER_MS + HOUR_MS + 20 * 60_000)
        assert hub.settle().settled == [1]
        watcher.run()
        debt = c.functions.supplyStatus(1, h2).call()[1]
        assert debt > 0
        c.functions.pay(1).transact({"from": h2, "value": debt})  # h2 pays its bill; h3 does not
        # one period per run: two settled in one run can be estimated in the block of the one before and then
        # mined a second later, on a costlier path of the contract (see the report of this test's author)
        hub.run_until(SUMMER_MS + 2 * HOUR_MS + 40 * 60_000)
        assert hub.settle().settled == [2]
        hub.run_until(SUMMER_MS + 3 * HOUR_MS + 40 * 60_000)  # past period 1's grace period (2 h)
        assert hub.settle().settled == [3]
        watcher.run()  # h3 -> grid
        hub.run_until(SUMMER_MS + 4 * HOUR_MS + 10 * 60_000)  # period 4 is still open
        with hub.factory() as session:
            settled_periods = set(session.scalars(select(SettlementPeriod.period_id)
                                                  .where(SettlementPeriod.state == SETTLED)))
            assert settled_periods == {1, 2, 3}
            rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
            from energy_manager.models import StoredReading

            by_message: dict[int, set[Any]] = {}
            for mid, period in session.execute(select(StoredReading.message_id, StoredReading.period)):
                by_message.setdefault(mid, set()).add(period)
        settled_addresses = [m.address for m in rows if m.address and by_message.get(m.id, {None}) <= settled_periods]
        open_addresses = [m.address for m in rows if m.address and not by_message.get(m.id, {None}) <= settled_periods]
        assert settled_addresses and open_addresses
        yield Filled(hub, anvil, settled_addresses, open_addresses)
    finally:
        anvil.stop()


class Server:
    """An aiohttp app served on 127.0.0.1 from a background thread (its own event loop), as `scb dashboard` would."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self._thread = threading.Thread(target=self.loop.run_forever, name="dashboard-test", daemon=True)

    def start(self) -> Server:
        self._thread.start()

        async def up() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def settings_for(filled: Filled, **changes: Any) -> DashboardSettings:
    return replace(dashboard_settings(filled.hub.config), **changes)


@pytest.fixture(scope="session")
def dashboard(filled: Filled) -> Iterator[Server]:
    """The dashboard over the filled hub; verification reads the hub's (in-memory) tangle, holders the anvil."""
    factory = open_read_database(filled.hub.config)
    app = create_app(filled.hub.config, factory, settings_for(filled, refresh_s=2.0), transport=filled.hub.tangle)
    server = Server(app).start()
    try:
        yield server
    finally:
        server.stop()
