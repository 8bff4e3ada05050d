"""The hub's database as the application layer sees it: every component's models."""
from __future__ import annotations

import importlib

#: The components' model modules. Each registers its tables on `scb.db.Base.metadata` when imported; the
#: application layer imports them all where the whole schema is needed (autogenerate, `scb db check`).
MODEL_MODULES = ("mam_client.models", "energy_manager.models", "settlement.models", "hub.fleet.models")


def load_models() -> None:
    """Import every component's models, so that `Base.metadata` holds the whole schema."""
    for name in MODEL_MODULES:
        importlib.import_module(name)

