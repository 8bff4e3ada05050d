"""The hub's database as the application layer sees it: every component's models, the hub's newest system."""
from __future__ import annotations

import importlib

from sqlalchemy.orm import Session, sessionmaker

#: The components' model modules. Each registers its tables on `scb.db.Base.metadata` when imported; the
#: application layer imports them all where the whole schema is needed (autogenerate, `scb db check`).
MODEL_MODULES = ("mam_client.models", "energy_manager.models", "settlement.models")


def load_models() -> None:
    """Import every component's models, so that `Base.metadata` holds the whole schema."""
    for name in MODEL_MODULES:
        importlib.import_module(name)


def latest_system(factory: sessionmaker[Session] | None, contract: str | None = None):  # type: ignore[no-untyped-def]
    """The newest solar system this hub settles (optionally on `contract`), as a `SystemRef`, or None."""
    from settlement.models import latest_system as newest
    from settlement.system import SystemRef

    if factory is None:
        return None
    with factory() as session:
        row = newest(session, contract)
        return SystemRef.of(row) if row is not None else None
