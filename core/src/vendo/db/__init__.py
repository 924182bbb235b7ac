"""Storage: one SQLAlchemy metadata for the kernel and every plugin, engines, sessions.

SQLite is the embedded default; PostgreSQL (psycopg 3) is selected by the URL.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from vendo.config import mask_url
from vendo.errors import ConfigError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A 64-bit auto-increment primary key on PostgreSQL that is still SQLite's ROWID alias.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use vendo.db.utcnow()")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Model(DeclarativeBase):
    """Base class of every table of the kernel and of plugins (one shared metadata)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite opens transactions lazily, before the first write only, which breaks
    # SAVEPOINT: a savepoint opened first would start the transaction and its RELEASE would
    # commit it. Vendo takes over: no implicit BEGIN, and an explicit one per transaction
    # (SQLAlchemy's documented recipe for SQLite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _hide_password(url: str) -> str:
    """Mask the password of a URL that may not even parse (for error messages)."""
    return re.sub(r"(://[^/@:]*:).*@", r"\1***@", url)


def parse_url(url: str) -> URL:
    """Parse a database URL.

    :raises ConfigError: the URL is malformed (including a non-numeric port).
    """
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"invalid database URL {_hide_password(url)!r}: expected e.g. sqlite:///path/vendo.db or "
            "postgresql+psycopg://user@host:5432/db (VENDO_DATABASE_URL)"
        ) from None


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock at the start: a transaction that reads then writes can
    # never fail to upgrade its lock after another writer committed (SQLITE_BUSY_SNAPSHOT);
    # waiting writers queue on busy_timeout instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or ``None`` for other databases and in-memory SQLite.

    :raises ConfigError: the URL is malformed.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for a Vendo database URL (SQLite pragmas: WAL, foreign keys, busy timeout).

    :raises ConfigError: malformed URL or missing database driver.
    """
    parsed = parse_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        options = {"connect_args": {"check_same_thread": False}}
    options.update(kwargs)
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"no database driver for {mask_url(url)}: {exc}. For PostgreSQL install vendo[postgres] (psycopg 3)."
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine
