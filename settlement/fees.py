"""Transaction fees: what the hub offers, the caps it never exceeds, and the bump of a replacement.

Pure (no I/O): `quote` turns what the node reports (the latest base fee, its suggested tip or gas price) into the
fee fields of a transaction, `bump` raises a stuck transaction's fees for its replacement. Both apply the
operator's caps (`[ethereum] max_fee_gwei`, `max_priority_fee_gwei`).

Why a cap *waits* instead of clamping blindly: an EIP-1559 transaction whose `maxFeePerGas` is below the current
base fee plus its tip cannot be mined at all; sending it would only park a transaction in the node's pool that
must later be replaced. So while base fee + tip is above the cap, `quote` raises `FeeAboveCap` (the settlement
job shows it as waiting, in the heartbeat and `scb status`, and tries again at its next check). When the chain
can be paid within the cap, `maxFeePerGas` is the usual 2 x base fee + tip, clamped to the cap: the hub then pays
base fee + tip, never more than the cap.

Why +12.5 % for a replacement: geth, Erigon and most hosted pools refuse a replacement for the same nonce unless
both `maxFeePerGas` and `maxPriorityFeePerGas` rise by at least 10 % (geth's `txpool.pricebump`); 12.5 % clears
that with rounding to spare. A replacement that the cap keeps below that is not sent (it would be refused):
`FeeAboveCap` again, and the transaction already in the pool keeps waiting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scb.errors import ChainRefused

GWEI = 10**9


class FeeAboveCap(ChainRefused):
    """The chain asks more than `[ethereum] max_fee_gwei` allows (or a replacement could not be bumped enough
    within it): the transaction waits for fees to fall instead of paying."""


@dataclass(frozen=True)
class Fees:
    """The fee fields of one transaction; `tip` None: a legacy transaction with `gasPrice = max_fee`."""

    max_fee: int
    tip: int | None = None

    @property
    def legacy(self) -> bool:
        return self.tip is None

    def tx_fields(self) -> dict[str, int]:
        if self.tip is None:
            return {"gasPrice": self.max_fee}
        return {"maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.tip}

    def describe(self) -> str:
        if self.tip is None:
            return f"gas price {gwei(self.max_fee)} gwei"
        return f"max fee {gwei(self.max_fee)} gwei, tip {gwei(self.tip)} gwei"

    def to_json(self) -> dict[str, Any]:
        # decimal strings: wei amounts exceed what JSON readers without big integers hold exactly
        return {"max_fee_wei": str(self.max_fee), "tip_wei": None if self.tip is None else str(self.tip)}


def gwei(wei: int) -> str:
    return f"{wei / GWEI:.9g}"


def _bumped(value: int) -> int:
    """`value` + 12.5 %, rounded up (and at least +1 wei, so that a zero tip still counts as raised)."""
    return max(value + 1, -(-value * 9 // 8)) if value > 0 else value


def quote(*, base_fee: int | None, suggested_tip: int | None, gas_price: int | None, max_fee_cap: int | None,
          tip_cap: int | None = None, fixed_tip: int | None = None) -> Fees:
    """The fees of a new transaction. `base_fee` None: the chain has no EIP-1559 base fee (or legacy is
    forced): `gas_price` is the node's eth_gasPrice. Raises FeeAboveCap while the chain asks more than the cap."""
    if base_fee is None:
        assert gas_price is not None
        if max_fee_cap is not None and gas_price > max_fee_cap:
            raise FeeAboveCap(f"the chain's gas price is {gwei(gas_price)} gwei, above ethereum.max_fee_gwei "
                              f"({gwei(max_fee_cap)}): waiting for it to fall")
        return Fees(gas_price)
    tip = fixed_tip if fixed_tip is not None else int(suggested_tip or 0)
    if tip_cap is not None:
        tip = min(tip, tip_cap)
    if max_fee_cap is not None and base_fee + tip > max_fee_cap:
        raise FeeAboveCap(f"base fee {gwei(base_fee)} gwei + tip {gwei(tip)} gwei is above ethereum.max_fee_gwei "
                          f"({gwei(max_fee_cap)}): waiting for the base fee to fall")
    max_fee = 2 * base_fee + tip
    if max_fee_cap is not None:
        max_fee = min(max_fee, max_fee_cap)
    return Fees(max_fee, tip)


def bump(old: Fees, current: Fees | None, *, max_fee_cap: int | None, tip_cap: int | None = None) -> Fees:
    """The fees of a replacement of a transaction sent with `old`: each field at least +12.5 %, and at least what
    the chain asks now (`current`, None when it asks more than the cap). Raises FeeAboveCap when the caps keep a
    field below +12.5 % (a node would refuse the replacement as underpriced)."""
    need_max = _bumped(old.max_fee)
    max_fee = max(need_max, current.max_fee if current is not None else 0)
    if max_fee_cap is not None:
        max_fee = min(max_fee, max_fee_cap)
    if max_fee < need_max:
        raise FeeAboveCap(f"the stuck transaction's {old.describe()} cannot be raised by 12.5 % within "
                          f"ethereum.max_fee_gwei ({gwei(max_fee_cap or 0)}): it waits in the pool for fees to fall")
    if old.tip is None:
        return Fees(max_fee)
    need_tip = _bumped(old.tip)
    tip = max(need_tip, current.tip if current is not None and current.tip is not None else 0)
    if tip_cap is not None:
        tip = min(tip, tip_cap)
    tip = min(tip, max_fee)
    if tip < need_tip:
        raise FeeAboveCap(f"the stuck transaction's tip {gwei(old.tip)} gwei cannot be raised by 12.5 % within "
                          "ethereum.max_priority_fee_gwei / max_fee_gwei: it waits in the pool for fees to fall")
    return Fees(max_fee, tip)
