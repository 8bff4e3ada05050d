"""Local proof of work: do `attachToTangle`'s job on this machine.

Why: most legacy nodes that a hub may be pointed at refuse `attachToTangle` (it costs them CPU), and
PyOTA's own `local_pow=True` needs the `PyOTA-PoW` package, which ships a prebuilt x86-64 library only and so
cannot run on the Raspberry Pi-class hubs this project targets. Here the nonce search is our portable C
(`mam_client.crypto._curl.pow_search`: bitsliced Curl-P-81, 128 candidates per transform, all cores) and the
rest follows IRI's `attachToTangle` exactly, so that a bundle attached locally is indistinguishable from one
attached by a node:

* the input is the bundle's transaction trytes **head first** (as `prepareTransfers` returns them);
* the first transaction processed (the head) gets trunk = trunkTransaction, branch = branchTransaction; every
  following one gets trunk = hash of the one processed before it, branch = trunkTransaction, so that walking
  trunk from the tail visits index 0, 1, ... lastIndex and then leaves the bundle;
* an all-`9` tag is replaced by the obsoleteTag; attachmentTimestamp = now (ms), lower bound 0, upper bound
  (3^27 - 1) / 2;
* the result is returned **tail first** (the reverse of the input), as IRI returns it.

Two ways in:
* `attach_trytes(...)` - the function (used by the tangle node itself and by the publisher);
* `LocalPowAdapter` - a PyOTA adapter wrapper that answers `attachToTangle` (and `interruptAttachingToTangle`)
  locally and forwards every other command to the wrapped node adapter, so `Iota(LocalPowAdapter(url))` sends
  with local PoW. `make_adapter(node_url, pow="local"|"remote")` builds the right one from configuration.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from iota.adapter import AdapterSpec, BadApiResponse, BaseAdapter, resolve_adapter
from iota.adapter.wrappers import BaseWrapper

from mam_client.crypto import _curl
from mam_client.crypto import trits as T
from mam_client.node import transaction as tx
from scb.errors import ConfigError, DataError, Interrupted, ScbError

#: No client needs more; every extra trit triples the expected work (MWM 14 ~ 4.8 M hashes, 27 ~ 7.6e12).
MAX_MWM = 27
POW_MODES = ("remote", "local")


class PowInterrupted(Interrupted):
    """The search was interrupted (interruptAttachingToTangle or shutdown) before every nonce was found."""


class PowCancel:
    """A flag the C search polls between transforms; `cancel()` stops every search that holds it.

    The flag is a one-byte bytearray handed to the C code by address, so setting it needs no lock and works
    while the search runs with the GIL released.
    """

    def __init__(self) -> None:
        self.flag = bytearray(1)

    def cancel(self) -> None:
        self.flag[0] = 1

    def reset(self) -> None:
        self.flag[0] = 0

    @property
    def cancelled(self) -> bool:
        return bool(self.flag[0])


def default_threads() -> int:
    """One search thread per core: the PoW is CPU-bound and the C code scales with threads."""
    return max(1, min(64, os.cpu_count() or 1))


def _check_mwm(mwm: object) -> int:
    if not isinstance(mwm, int) or isinstance(mwm, bool) or not 0 <= mwm <= MAX_MWM:
        raise DataError(f"minWeightMagnitude must be an integer 0..{MAX_MWM}, not {mwm!r}")
    return mwm


def search_nonce(
    trytes: str, mwm: int, *, threads: int | None = None, cancel: PowCancel | None = None
) -> tuple[str, int]:
    """Return (`trytes` with a nonce whose Curl-P-81 hash ends in >= `mwm` zero trits, hashes tried).

    Only the nonce (the last 27 trytes) changes. Raises PowInterrupted when `cancel` is set during the search.
    """
    _check_mwm(mwm)
    if not tx.is_trytes(trytes, tx.TRANSACTION_TRYTES):
        raise DataError(f"transaction trytes must be {tx.TRANSACTION_TRYTES} trytes of 9A-Z")
    nonce, tried = _curl.pow_search(
        T.trits(trytes), mwm, threads or default_threads(), cancel.flag if cancel is not None else None
    )
    if nonce is None:
        raise PowInterrupted("proof of work interrupted")
    return trytes[: tx.NONCE[0]] + T.trytes(nonce), tried


def attach_trytes(
    trytes: Sequence[str],
    trunk: str,
    branch: str,
    mwm: int,
    *,
    threads: int | None = None,
    cancel: PowCancel | None = None,
    now_ms: Callable[[], int] | None = None,
) -> list[str]:
    """IRI's attachToTangle, locally: link, timestamp and PoW a bundle given head first; return it tail first.

    Raises DataError for malformed input (nothing is attached) and PowInterrupted when cancelled.
    """
    _check_mwm(mwm)
    for name, value in (("trunkTransaction", trunk), ("branchTransaction", branch)):
        if not tx.is_trytes(value, tx.HASH_TRYTES):
            raise DataError(f"{name} must be a hash of {tx.HASH_TRYTES} trytes")
    items = [str(t) for t in trytes]
    if not items:
        raise DataError("no transaction trytes to attach")
    for i, item in enumerate(items):
        if not tx.is_trytes(item, tx.TRANSACTION_TRYTES):
            raise DataError(f"trytes[{i}] is not {tx.TRANSACTION_TRYTES} trytes of 9A-Z")
    clock = now_ms or (lambda: int(time.time() * 1000))
    nines_tag = "9" * (tx.TAG[1] - tx.TAG[0])
    upper = tx.int_trytes(tx.MAX_TIMESTAMP_VALUE, 9)
    zero9 = "9" * 9
    attached: list[str] = []
    previous: str | None = None
    for item in items:
        item = tx.with_field(item, tx.TRUNK, previous or trunk)
        item = tx.with_field(item, tx.BRANCH, branch if previous is None else trunk)
        if tx.field(item, tx.TAG) == nines_tag:
            item = tx.with_field(item, tx.TAG, tx.field(item, tx.OBSOLETE_TAG))
        item = tx.with_field(item, tx.ATTACHMENT_TIMESTAMP, tx.int_trytes(clock(), 9))
        item = tx.with_field(item, tx.ATTACHMENT_TIMESTAMP_LOWER, zero9)
        item = tx.with_field(item, tx.ATTACHMENT_TIMESTAMP_UPPER, upper)
        item, _ = search_nonce(item, mwm, threads=threads, cancel=cancel)
        previous = tx.transaction_hash(item)
        attached.append(item)
    attached.reverse()
    return attached


class LocalPowAdapter(BaseWrapper):
    """PyOTA adapter wrapper: attachToTangle runs here (our C PoW), every other command goes to the node.

    Use `Iota(LocalPowAdapter("http://node:14265"))`. PyOTA's own `local_pow=True` switch would bypass the
    adapter and import `pow.ccurl_interface` (PyOTA-PoW); this wrapper keeps that switch off so PyOTA always
    comes through `send_request`, and `Iota(LocalPowAdapter(url), local_pow=True)` still uses our PoW.
    """

    def __init__(self, adapter: AdapterSpec, threads: int | None = None) -> None:
        super().__init__(adapter if isinstance(adapter, BaseAdapter) else resolve_adapter(adapter))
        self.threads = threads or default_threads()
        self._cancel = PowCancel()
        self._lock = threading.Lock()  # one search at a time: each already uses every core

    def set_local_pow(self, local_pow: bool) -> None:
        """Ignore PyOTA's switch: PoW is always local through this wrapper (see the class docstring)."""
        self.local_pow = False

    def send_request(self, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        command = payload.get("command")
        if command == "attachToTangle":
            started = time.monotonic()
            with self._lock:
                self._cancel.reset()
                try:
                    result = attach_trytes(
                        [str(t) for t in payload.get("trytes") or []],
                        str(payload.get("trunkTransaction")),
                        str(payload.get("branchTransaction")),
                        payload.get("minWeightMagnitude"),  # type: ignore[arg-type]
                        threads=self.threads,
                        cancel=self._cancel,
                    )
                except PowInterrupted:
                    result = []  # IRI answers an interrupted attach with an empty list
                except DataError as exc:
                    raise BadApiResponse(f"local attachToTangle refused the request: {exc}") from None
            return {"trytes": result, "duration": int((time.monotonic() - started) * 1000)}
        if command == "interruptAttachingToTangle":
            self._cancel.cancel()
            return {"duration": 0}
        return self.adapter.send_request(payload, **kwargs)


def make_adapter(node_url: str, pow_mode: str = "remote", threads: int | None = None) -> BaseAdapter:
    """The PyOTA adapter for `[iota] node_url` and `[iota] pow`: the node itself, or the node plus local PoW."""
    if pow_mode not in POW_MODES:
        raise ConfigError(f"iota.pow must be one of {', '.join(POW_MODES)}, not {pow_mode!r}")
    base = resolve_adapter(node_url)
    return LocalPowAdapter(base, threads=threads) if pow_mode == "local" else base
