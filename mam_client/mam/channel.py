"""MAM channel state, serialised with @iota/mam.js's field names so a channel can move between SCB and mam.js.

    {"seed", "mode", "sideKey", "security", "start", "count", "nextCount", "index", "nextRoot"}

Settings the reference cannot follow are refused (SPEC §11): mam.js never copies nextCount into count, so only
count == nextCount keeps the announced nextRoot equal to the next tree's root; and a count that is not a power
of two gives carried-up leaves a wrong authentication path. A tree of 2**k leaves is the largest that holds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mam_client.crypto.trits import HASH_TRYTES, is_trytes
from mam_client.mam.errors import InvalidChannel, InvalidInput

MODES = ("public", "private", "restricted")
#: Largest tree a channel may use. Why: creating a message computes every leaf of the current and next tree
#: (cached afterwards); 2**10 leaves is already ~2 s of one-time work on a Pi, and MAM readers gain nothing
#: from bigger trees.
MAX_COUNT = 1024


def _check_seed(seed: str) -> str:
    if not is_trytes(seed, HASH_TRYTES):
        raise InvalidInput("The seed must be 81 trytes long")
    return str(seed)


def _check_security(security: object) -> int:
    if not isinstance(security, int) or isinstance(security, bool) or not 1 <= security <= 3:
        raise InvalidInput(f"Security must be between 1 and 3, it is {security}")
    return security


def normalise_side_key(mode: str, side_key: str | None) -> str | None:
    """The side key as stored in a channel: restricted only, 1-81 trytes, right-padded with 9 to 81."""
    if mode == "restricted":
        if not side_key:
            raise InvalidInput("You must provide a sideKey for restricted mode")
        if not is_trytes(side_key):
            raise InvalidInput("The sideKey must be trytes (9A-Z)")
        if len(side_key) > HASH_TRYTES:
            raise InvalidInput("The sideKey must be maximum length 81 trytes")
        return str(side_key).ljust(HASH_TRYTES, "9")
    if side_key:
        raise InvalidInput("sideKey is only used in restricted mode")
    return None


def _check_count(count: object, next_count: object) -> int:
    for name, value in (("count", count), ("nextCount", next_count)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidChannel(f"{name} must be a positive integer, not {value!r}")
    assert isinstance(count, int)
    if count != next_count:
        raise InvalidChannel(
            f"count ({count}) must equal nextCount ({next_count}): mam.js never moves nextCount into count, "
            "so the announced nextRoot would not match the next tree"
        )
    if count & (count - 1):
        raise InvalidChannel(f"count must be a power of two, not {count}: mam.js's authentication path is wrong "
                             "for carried-up leaves of odd trees")
    if count > MAX_COUNT:
        raise InvalidChannel(f"count may be at most {MAX_COUNT}, not {count}")
    return count


@dataclass
class ChannelState:
    """A writer's channel. Mutated by `create_message`, like mam.js's channelState."""

    seed: str
    mode: str
    side_key: str | None
    security: int
    start: int = 0
    count: int = 1
    next_count: int = 1
    index: int = 0
    next_root: str | None = None

    @property
    def key_index(self) -> int:
        """Global index of the one-time key the next message will be signed with."""
        return self.start + self.index

    def to_json(self, include_secrets: bool = True) -> dict[str, Any]:
        """mam.js field names; `include_secrets=False` drops seed and side key (for the database)."""
        out: dict[str, Any] = {}
        if include_secrets:
            out["seed"] = self.seed
        out["mode"] = self.mode
        if include_secrets and self.side_key is not None:
            out["sideKey"] = self.side_key
        out.update(security=self.security, start=self.start, count=self.count, nextCount=self.next_count,
                   index=self.index)
        if self.next_root is not None:
            out["nextRoot"] = self.next_root
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: object, seed: str | None = None, side_key: str | None = None) -> "ChannelState":
        """Load a state written by SCB or mam.js; `seed`/`side_key` supply what was stored elsewhere."""
        if not isinstance(data, dict):
            raise InvalidChannel("a channel state must be a JSON object")
        try:
            mode = data["mode"]
            security = data["security"]
            seed_value = seed if seed is not None else data["seed"]
        except KeyError as exc:
            raise InvalidChannel(f"channel state lacks the field {exc.args[0]!r}") from None
        if mode not in MODES:
            raise InvalidChannel(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        key = side_key if side_key is not None else data.get("sideKey")
        state = cls(
            seed=_check_seed(seed_value),
            mode=mode,
            side_key=normalise_side_key(mode, key),
            security=_check_security(security),
            start=data.get("start", 0),
            count=data.get("count", 1),
            next_count=data.get("nextCount", 1),
            index=data.get("index", 0),
            next_root=data.get("nextRoot"),
        )
        _check_count(state.count, state.next_count)
        for name, value in (("start", state.start), ("index", state.index)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidChannel(f"{name} must be a non-negative integer, not {value!r}")
        if state.index >= state.count:
            raise InvalidChannel(f"index {state.index} is outside a tree of {state.count} leaves")
        if state.next_root is not None and not is_trytes(state.next_root, HASH_TRYTES):
            raise InvalidChannel("nextRoot must be 81 trytes")
        return state

    @classmethod
    def loads(cls, text: str, seed: str | None = None, side_key: str | None = None) -> "ChannelState":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidChannel(f"channel state is not valid JSON: {exc.msg}") from None
        return cls.from_json(data, seed=seed, side_key=side_key)


def create_channel(seed: str, mode: str, side_key: str | None = None, security: int = 2,
                   count: int = 1) -> ChannelState:
    """A new channel (mam.js createChannel, plus a tree size `count` = nextCount)."""
    _check_seed(seed)
    _check_security(security)
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    key = normalise_side_key(mode, side_key)
    _check_count(count, count)
    return ChannelState(seed=str(seed), mode=mode, side_key=key, security=security, count=count, next_count=count)
