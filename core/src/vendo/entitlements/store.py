"""Counter stores: where usage counters live.

A store keeps integer counters by key and offers one atomic operation that matters:
*add to several counters only if every one stays within its limit* (a pooled workspace quota
and a member's cap move together or not at all). The SQL store below is the default: its
writes join the caller's transaction, so a counter and its ledger entry commit together.
Other stores (Redis) are plugins of the ``counters`` family.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from vendo.capabilities import Bucket, CounterStore
from vendo.db import utcnow
from vendo.entitlements.models import Counter

__all__ = ["Bucket", "CounterStore", "SQLCounterStore"]


def _insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(Counter.__table__)


_READ = select(Counter.__table__.c.key, Counter.__table__.c.value) \
    .where(Counter.__table__.c.key.in_(bindparam("keys", expanding=True)))
#: One counter (the common case): a plain primary-key read, without the expanding ``IN``'s
#: per-call compilation.
_READ_ONE = select(Counter.__table__.c.value).where(Counter.__table__.c.key == bindparam("key"))


@lru_cache(maxsize=None)
def _upsert_statement(dialect: str, conditional: bool) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET value = value + :amount [WHERE value + :amount
    <= :limit] RETURNING value``, built once per dialect (SQLAlchemy reuses its compiled form)."""
    table = Counter.__table__
    statement = _insert(dialect).values(key=bindparam("key"), value=bindparam("amount"),
                                        updated_at=bindparam("now"))
    new_value = table.c.value + statement.excluded.value
    return statement.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={"value": new_value, "updated_at": statement.excluded.updated_at},
        where=(new_value <= bindparam("limit")) if conditional else None,
    ).returning(table.c.value)


class SQLCounterStore:
    """Counters in the ``vendo_usage_counters`` table (SQLite or PostgreSQL), one
    conditional UPSERT per bucket: ``value + amount <= limit`` is checked by the database
    under the row lock, so concurrent callers can never both take the last unit.

    Statements run on the session's connection (Core), in its transaction: the ORM's
    per-statement machinery (autoflush, events, ORM compile state) cost more than the
    statements themselves, and counters are not ORM objects."""

    name = "sql"

    def _upsert(self, session: Session, bucket: Bucket, amount: int, conditional: bool) -> int | None:
        conditional = conditional and bucket.limit is not None
        if conditional and amount > bucket.limit:
            return None
        statement = _upsert_statement(session.get_bind().dialect.name, conditional)
        params = {"key": bucket.key, "amount": amount, "now": utcnow()}
        if conditional:
            params["limit"] = bucket.limit
        return session.connection().execute(statement, params).scalar()

    def try_add(self, session: Session, buckets: list[Bucket], amount: int) -> list[int] | None:
        """See :class:`CounterStore`. One bucket is one conditional UPSERT (it changes nothing
        when refused); several run in a savepoint of ``session``, rolled back on a refusal."""
        if len(buckets) == 1:
            value = self._upsert(session, buckets[0], amount, conditional=True)
            return None if value is None else [value]
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
        if not keys:
            return []
        if len(keys) == 1:
            return [int(session.connection().execute(_READ_ONE, {"key": keys[0]}).scalar() or 0)]
        found = dict(session.connection().execute(_READ, {"keys": keys}).all())
        return [int(found.get(key, 0)) for key in keys]

    def overwrite(self, session: Session, values: dict[str, int]) -> None:
        """See :class:`CounterStore`: one multi-row UPSERT per 500 counters, in ``session``'s
        transaction."""
        items = list(values.items())
        now = utcnow()
        for start in range(0, len(items), 500):
            rows = [{"key": key, "value": int(value), "updated_at": now} for key, value in items[start:start + 500]]
            statement = _insert(session.get_bind().dialect.name).values(rows)
            session.execute(statement.on_conflict_do_update(
                index_elements=[Counter.key],
                set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
            ))
