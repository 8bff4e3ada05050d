"""How far the local tangle node may prune: the application layer's part of mam_client.node.prune.

The node prunes a message's transactions once the hub has archived it. With a fleet (`[fleet] url`), the fleet
upload also needs the bundle (the `message` stream carries its trytes), so the node may prune only messages the
fleet has acknowledged: ids up to the `message` cursor of `fleet_upload_cursors`. That cursor belongs to this layer
(hub.fleet), which the node, a component, must not import; so this module hands the node the limit as a *hold*
through the `scb tangle-node` parser default `prune_holds` (a function of the configuration).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from scb.config import Config

if TYPE_CHECKING:  # a type only: `scb tangle-node` imports this module, and without a fleet needs no SQLAlchemy
    from sqlalchemy.orm import Session


def fleet_message_hold(session: "Session") -> int:
    """The newest mam_messages id the fleet acknowledged (0 before the first upload)."""
    from hub.fleet.models import FleetUploadCursor

    row = session.get(FleetUploadCursor, "message")
    return int(row.cursor) if row is not None else 0


def prune_holds(config: Config) -> "Sequence[Callable[[Session], int | None]]":
    """The holds of this hub's configuration: the fleet's while uploads are configured, else none."""
    from hub.fleet.settings import fleet_settings

    return (fleet_message_hold,) if fleet_settings(config).uploads else ()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds no command: gives `scb tangle-node` (when it is installed) the holds of this layer."""
    node = sub.choices.get("tangle-node")
    if node is not None:
        node.set_defaults(prune_holds=prune_holds)
