"""Community time as the settlement sees it, and keeping a development chain's clock on it.

The energy manager stamps readings with the *community clock*: real time for real meters, an accelerated clock
(e.g. 60x or 3600x) for the simulated demo community. Periods are ranges of community time, and a period closes
when community time has passed its end plus the lateness window. The settlement process does not run a clock of
its own: it reads the anchor the energy manager stores (`scb.community_clock`: `energy_state` key "clock", community
time at a wall-clock instant, and the speed), so both processes agree on "now" without talking to each other.

The contract compares a period's end and every due date with `block.timestamp`. On a real chain with a real-time
community clock the two agree by themselves. With an accelerated clock they do not: a 7-day grace period would
take 7 real days while the community lives through a year. So when the chain is a local development chain (anvil)
and the community clock is simulated, `ChainClock` moves the chain's clock to community time before every
transaction (`evm_setNextBlockTimestamp`) and mines an empty block at community time before every standing check
(`evm_mine`), so bills fall due and grace periods run out in community time. On any other chain this is off and
the chain's own clock rules (docs/settlement.md "Community time and chain time").
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import EnergyState
from energy_manager.settings import EnergySettings
from scb.community_clock import StoredCommunityTime
from settlement.chain import ChainClient

log = logging.getLogger(__name__)

#: seconds the chain may run ahead of community time before its clock is set back (blocks mined by holders'
#: transactions between two settlements carry anvil's own, slower, clock, so small leads are normal)
SET_BACK_TOLERANCE_S = 5


class CommunityTime(StoredCommunityTime):
    """`now_ms()`: the community clock, from the anchor the energy manager stored; None before it ever ran."""

    def __init__(self, energy: EnergySettings, factory: sessionmaker[Session],
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(factory, EnergyState, energy.clock_speed == 1 and energy.start_ms is None, wall)


class FixedTime:
    """A community clock that says what it is told (tests, `scb settle --now --at`)."""

    def __init__(self, now_ms: int | None) -> None:
        self.real_time = False
        self.value = now_ms

    def now_ms(self) -> int | None:
        return self.value


class ChainClock:
    """Keeps a development chain's block time on community time (enabled) or does nothing (disabled)."""

    def __init__(self, client: ChainClient, enabled: bool) -> None:
        self.client = client
        self.enabled = enabled

    @classmethod
    def for_setting(cls, client: ChainClient, setting: str) -> ChainClock:
        """time_sync "auto": on for a development chain; "on"/"off" force it.

        Why on a development chain even with a real-time community: anvil mines only when a transaction arrives
        and checks `settle` against the latest block's time, so with real meters that block is old and every
        settlement fails as PeriodNotEnded; an empty block at the present costs nothing there."""
        if setting == "on":
            enabled = True
        elif setting == "off":
            enabled = False
        else:
            enabled = client.is_dev_chain()
        if enabled and not client.is_dev_chain():
            from scb.errors import ConfigError

            raise ConfigError("ethereum.time_sync is on but the node is not a local development chain (anvil): "
                              "only there can the hub set the chain's clock")
        return cls(client, enabled)

    def _align(self, now_s: int) -> int:
        """Set the chain back if it runs ahead of the community (first start with a community clock in the past);
        returns the latest block's timestamp afterwards."""
        latest = self.client.latest_timestamp()
        if latest > now_s + SET_BACK_TOLERANCE_S:
            log.warning("the chain's clock (%d) is ahead of community time (%d): setting it back", latest, now_s)
            self.client.set_time(now_s)
            self.client.mine(now_s)
            latest = self.client.latest_timestamp()
        return latest

    def before_transaction(self, now_s: int) -> None:
        """The chain's clock jumps to community time `now_s`: gas estimation and our transaction's block see it.

        Why an empty block and `evm_setTime` rather than `evm_setNextBlockTimestamp`: anvil runs eth_estimateGas
        (and eth_call) against the latest block's timestamp, so `settle` would be refused as PeriodNotEnded before
        it is even signed; after the empty block at `now_s` the estimate sees community time, and the clock set
        to `now_s` gives our transaction's block a timestamp just after it."""
        if not self.enabled:
            return
        latest = self._align(now_s)
        if now_s > latest:
            self.client.set_time(now_s)
            self.client.mine(now_s)

    def before_read(self, now_s: int) -> None:
        """Mine an empty block at community time so that eth_call sees the community's present."""
        if not self.enabled:
            return
        latest = self._align(now_s)
        if now_s > latest:
            self.client.set_time(now_s)
            self.client.mine(now_s)
