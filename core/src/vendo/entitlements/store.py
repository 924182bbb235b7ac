"""Counter stores: where usage counters live.

A store keeps integer counters by key and offers one atomic operation that matters:
*add to several counters only if every one stays within its limit* (a pooled workspace quota
and a member's cap move together or not at all). The SQL store below is the default: its
writes join the caller's transaction, so a counter and its ledger entry commit together.
Other stores (Redis) are plugins of the ``counters`` family.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vendo.capabilities import Bucket, CounterStore
from vendo.db import utcnow
from vendo.entitlements.models import Counter

__all__ = ["Bucket", "CounterStore", "SQLCounterStore"]


def _insert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(Counter)


class SQLCounterStore:
    """Counters in the ``vendo_usage_counters`` table (SQLite or PostgreSQL), one
    conditional UPSERT per bucket: ``value + amount <= limit`` is checked by the database
    under the row lock, so concurrent callers can never both take the last unit."""

    name = "sql"

    def _upsert(self, session: Session, bucket: Bucket, amount: int, conditional: bool) -> int | None:
        if conditional and bucket.limit is not None and amount > bucket.limit:
            return None
        now = utcnow()
        statement = _insert(session).values(key=bucket.key, value=amount, updated_at=now)
        new_value = Counter.value + statement.excluded.value
        statement = statement.on_conflict_do_update(
            index_elements=[Counter.key],
            set_={"value": new_value, "updated_at": statement.excluded.updated_at},
            where=(new_value <= bucket.limit) if conditional and bucket.limit is not None else None,
        ).returning(Counter.value)
        return session.execute(statement).scalar()

    def try_add(self, session: Session, buckets: list[Bucket], amount: int) -> list[int] | None:
        """See :class:`CounterStore`; runs in a savepoint of ``session``."""
        savepoint = session.begin_nested()
        values = []
        for bucket in buckets:
            value = self._upsert(session, bucket, amount, conditional=True)
            if value is None:
                savepoint.rollback()
                return None
            values.append(value)
        savepoint.commit()
        return values

    def add(self, session: Session, buckets: list[Bucket], amount: int) -> list[int]:
        """See :class:`CounterStore`."""
        return [self._upsert(session, bucket, amount, conditional=False) for bucket in buckets]

    def read(self, session: Session, keys: list[str]) -> list[int]:
        """See :class:`CounterStore`."""
        found = dict(session.execute(select(Counter.key, Counter.value).where(Counter.key.in_(keys))).all())
        return [int(found.get(key, 0)) for key in keys]
