"""The pure parts of settling on a public chain: fee quotes and caps, the replacement bump, chunked log scans
(halving on refusal, resuming), the deployment-block search, and how provider errors are told apart."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from web3.providers.base import BaseProvider

from scb.config import Config
from settlement.chain import ChainClient, RateLimited, is_rate_limit
from settlement.settings import ethereum_settings
from settlement.fees import FeeAboveCap, Fees, bump, quote
from settlement.logscan import LogScanner, RangeRefused, find_deployment_block, is_range_refusal
from scb.errors import ChainRefused, ChainUnavailable

GWEI = 10**9


# ------------------------------------------------------------------------------------------------ fees


def test_eip1559_quote_is_twice_the_base_fee_plus_the_tip() -> None:
    fees = quote(base_fee=10 * GWEI, suggested_tip=2 * GWEI, gas_price=None, max_fee_cap=None)
    assert fees == Fees(22 * GWEI, 2 * GWEI)
    assert fees.tx_fields() == {"maxFeePerGas": 22_000_000_000, "maxPriorityFeePerGas": 2_000_000_000}


def test_a_cap_clamps_the_max_fee_while_the_chain_can_be_paid_within_it() -> None:
    # base 10 + tip 2 = 12 gwei paid now; 2 x base + tip = 22 would be allowed, the cap keeps it at 15
    assert quote(base_fee=10 * GWEI, suggested_tip=2 * GWEI, gas_price=None, max_fee_cap=15 * GWEI) == \
        Fees(15 * GWEI, 2 * GWEI)


def test_a_fee_above_the_cap_waits_instead_of_being_paid() -> None:
    with pytest.raises(FeeAboveCap, match="above ethereum.max_fee_gwei"):
        quote(base_fee=14 * GWEI, suggested_tip=2 * GWEI, gas_price=None, max_fee_cap=15 * GWEI)
    with pytest.raises(FeeAboveCap):
        quote(base_fee=None, suggested_tip=None, gas_price=30 * GWEI, max_fee_cap=15 * GWEI)
    assert issubclass(FeeAboveCap, ChainRefused)


def test_tip_cap_and_fixed_tip() -> None:
    assert quote(base_fee=GWEI, suggested_tip=50 * GWEI, gas_price=None, max_fee_cap=None, tip_cap=3 * GWEI) == \
        Fees(5 * GWEI, 3 * GWEI)
    assert quote(base_fee=GWEI, suggested_tip=50 * GWEI, gas_price=None, max_fee_cap=None, fixed_tip=GWEI) == \
        Fees(3 * GWEI, GWEI)


def test_legacy_quote_is_the_gas_price() -> None:
    fees = quote(base_fee=None, suggested_tip=None, gas_price=7 * GWEI, max_fee_cap=None)
    assert fees.legacy and fees.tx_fields() == {"gasPrice": 7_000_000_000}


def test_a_replacement_raises_both_fields_by_at_least_12_5_percent() -> None:
    old = Fees(800, 80)
    assert bump(old, None, max_fee_cap=None) == Fees(900, 90)
    # what the chain asks now wins when it is more
    assert bump(old, Fees(5000, 100), max_fee_cap=None) == Fees(5000, 100)
    # rounding up, never less than +12.5 %: 801 * 1.125 = 901.125
    assert bump(Fees(801, 81), None, max_fee_cap=None) == Fees(902, 92)
    assert bump(Fees(800), None, max_fee_cap=None) == Fees(900)  # legacy stays legacy


def test_a_replacement_within_the_cap_or_none() -> None:
    assert bump(Fees(800, 80), Fees(5000, 100), max_fee_cap=1000) == Fees(1000, 100)
    with pytest.raises(FeeAboveCap, match="cannot be raised by 12.5 %"):
        bump(Fees(950, 80), None, max_fee_cap=1000)  # +12.5 % would be 1069
    with pytest.raises(FeeAboveCap):
        bump(Fees(800, 80), None, max_fee_cap=None, tip_cap=85)  # the tip could rise to 85 only


# ------------------------------------------------------------------------------------------------ log scans


class Provider:
    """eth_getLogs over blocks 0..n with one log per block, refusing ranges over `limit` blocks."""

    def __init__(self, limit: int, fail_at: int | None = None) -> None:
        self.limit = limit
        self.fail_at = fail_at
        self.calls: list[tuple[int, int]] = []

    def fetch(self, lo: int, hi: int) -> list[int]:
        self.calls.append((lo, hi))
        if hi - lo + 1 > self.limit:
            raise RangeRefused(f"query exceeds max block range {self.limit}")
        if self.fail_at is not None and lo <= self.fail_at <= hi:
            self.fail_at = None  # once
            raise ChainUnavailable("connection reset")
        return list(range(lo, hi + 1))


def test_scan_halves_the_chunk_on_refusal_and_keeps_the_size_that_worked() -> None:
    provider = Provider(limit=600)
    scanner = LogScanner(2000)
    assert scanner.scan(("c", "E", "{}"), provider.fetch, 100, 5099) == list(range(100, 5100))
    assert scanner.chunk == 500  # 2000 -> 1000 -> 500
    assert provider.calls[:3] == [(100, 2099), (100, 1099), (100, 599)]
    assert all(hi - lo + 1 <= 500 for lo, hi in provider.calls[3:])
    provider.calls.clear()
    scanner.scan(("c", "E", "{}"), provider.fetch, 0, 999)
    assert provider.calls == [(0, 499), (500, 999)]  # the next scan starts at the size that worked


def test_a_failed_scan_resumes_from_the_last_block_scanned() -> None:
    provider = Provider(limit=10_000, fail_at=2500)
    scanner = LogScanner(1000)
    key = ("c", "E", "{}")
    with pytest.raises(ChainUnavailable):
        scanner.scan(key, provider.fetch, 0, 4999)
    provider.calls.clear()
    assert scanner.scan(key, provider.fetch, 0, 4999) == list(range(5000))
    assert provider.calls[0] == (2000, 2999)  # blocks 0..1999 were not asked again


def test_a_one_block_refusal_is_raised() -> None:
    with pytest.raises(RangeRefused):
        LogScanner(4).scan(("k",), Provider(limit=0).fetch, 0, 10)


def test_deployment_block_binary_search() -> None:
    asked: list[int] = []

    def has_code_at(block: int) -> bool:
        asked.append(block)
        return block >= 12_345

    assert find_deployment_block(has_code_at, 30_000) == 12_345
    assert len(asked) <= 17  # log2(30000) + the head
    assert find_deployment_block(lambda b: True, 10) == 0


@pytest.mark.parametrize(("message", "range_", "rate"), [
    ("query exceeds max block range 1000", True, False),
    ("query returned more than 10000 results", True, False),
    ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range", True, False),
    ("limit exceeded", False, True),
    ("daily request count exceeded, request rate limited", False, True),
    ("Too Many Requests", False, True),
    ("execution reverted", False, False),
])
def test_provider_errors_are_told_apart(message: str, range_: bool, rate: bool) -> None:
    assert is_range_refusal(message) == range_
    assert is_rate_limit(message) == rate


# ------------------------------------------------------------------------------------------------ rate limits


class Throttled(BaseProvider):  # type: ignore[misc]
    """Answers eth_blockNumber with "limit exceeded" `refusals` times, then 0x2a."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.calls = 0

    def make_request(self, method: Any, params: Any) -> Any:
        self.calls += 1
        if self.calls <= self.refusals:
            return {"jsonrpc": "2.0", "id": self.calls, "error": {"code": -32005, "message": "limit exceeded"}}
        return {"jsonrpc": "2.0", "id": self.calls, "result": "0x2a"}


def throttled_client(refusals: int, wait_s: float) -> tuple[ChainClient, Throttled, list[float]]:
    slept: list[float] = []
    provider = Throttled(refusals)
    eth = dataclasses.replace(ethereum_settings(Config(data={})), rate_limit_wait_s=wait_s)
    return ChainClient(eth, provider=provider, sleep=slept.append), provider, slept


def test_a_rate_limit_is_backed_off_and_retried() -> None:
    client, provider, slept = throttled_client(3, 60.0)
    assert client.block_number() == 42
    assert provider.calls == 4 and slept == [0.25, 0.5, 1.0]


def test_a_rate_limit_that_lasts_is_raised_as_the_chain_unavailable() -> None:
    client, provider, slept = throttled_client(100, 1.0)
    with pytest.raises(RateLimited, match="rate-limits eth_blockNumber: limit exceeded"):
        client.block_number()
    assert slept == [0.25, 0.5]  # the next 1 s would pass rate_limit_wait_s
    assert issubclass(RateLimited, ChainUnavailable)
