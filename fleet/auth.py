"""Who may upload: accounts added with `scb fleet allow`, and, with `[fleet] rpc_url` and `contract`, every account
that holds a system's hub role in that SolarProperty contract (settlement's facade `is_hub`)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy.orm import Session, sessionmaker

from fleet.models import AllowedAccount
from scb.db import transaction
from scb.errors import UsageError

log = logging.getLogger("fleet.auth")

#: How long the chain's answer is trusted. Why: one RPC round per system and upload would make the chain's latency
#: the ingest's bound; a hub whose role was revoked is refused within this time; a stranger asking again and again
#: costs the chain one call per NEGATIVE_TTL_S.
POSITIVE_TTL_S = 300.0
NEGATIVE_TTL_S = 30.0
#: Systems looked at on the contract at most. Why: a contract with very many systems must not make one upload
#: a thousand RPC calls; past this, accounts must be allowed by hand.
MAX_SYSTEMS = 256


def checked_account(value: str) -> str:
    if not is_address(value):
        raise UsageError(f"{value!r} is not an Ethereum account (0x followed by 40 hex digits)")
    return to_checksum_address(value)


def allow(factory: sessionmaker[Session], account: str, note: str = "") -> bool:
    """Admit `account`; False if it was admitted already."""
    account = checked_account(account)
    with transaction(factory) as session:
        if session.get(AllowedAccount, account) is not None:
            return False
        session.add(AllowedAccount(account=account, note=note))
    return True


def chain_hubs(rpc_url: str, contract: str, eth_settings: Any) -> Callable[[str], bool]:
    """account -> whether it holds the hub role of any system on `contract` (views on the latest block)."""
    from settlement.chain import ChainClient
    from settlement.solar_property import SolarProperty

    client = ChainClient(eth_settings, rpc_url=rpc_url)

    def is_hub(account: str) -> bool:
        count = int(SolarProperty(client, contract, 1).view("systemCount"))
        return any(SolarProperty(client, contract, system_id).is_hub(account)
                   for system_id in range(1, min(count, MAX_SYSTEMS) + 1))

    return is_hub


class Authorizer:
    """Thread-safe; `allowed` runs in the server's database threads (it may call the chain)."""

    def __init__(self, factory: sessionmaker[Session], chain: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.factory = factory
        self.chain = chain
        self.clock = clock
        self._cache: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def allowed(self, account: str) -> bool:
        with self.factory() as session:
            if session.get(AllowedAccount, account) is not None:
                return True
        if self.chain is None:
            return False
        now = self.clock()
        with self._lock:
            cached = self._cache.get(account)
        if cached is not None and cached[1] > now:
            return cached[0]
        verdict = self.chain(account)  # ChainUnavailable propagates: the hub is told to retry (503)
        with self._lock:
            self._cache[account] = (verdict, now + (POSITIVE_TTL_S if verdict else NEGATIVE_TTL_S))
        return verdict
