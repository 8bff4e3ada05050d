"""Queries the end-to-end hub tests (test_smoke on SQLite, test_postgres_hub on PostgreSQL) wait on."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from energy_manager.models import StoredReading
from mam_client.models import ATTACHED, OutboxMessage
from settlement.models import SETTLED, SettlementPeriod


def settled_address(factory: sessionmaker[Session]) -> str | None:
    """The address of an attached MAM message holding a reading of the first settled period, or None yet."""
    with factory() as s:
        period = s.scalars(select(SettlementPeriod).where(SettlementPeriod.state == SETTLED)
                           .order_by(SettlementPeriod.period_id)).first()
        if period is None:
            return None
        return s.scalars(select(OutboxMessage.address).join(
            StoredReading, StoredReading.message_id == OutboxMessage.id).where(
            StoredReading.period == period.period_id, OutboxMessage.state == ATTACHED).limit(1)).first()
