"""Storage: one SQLAlchemy metadata for the kernel and every plugin, engines, sessions.

SQLite is the embedded default; PostgreSQL (psycopg 3) is selected by the URL.
"""

from __future__ import annotations

import random
import re
import threading
import time
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from vendo.config import mask_url
from vendo.errors import ConfigError

T = TypeVar("T")

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


#: Execution option of connections whose transactions only read (``kernel.session(read_only=True)``):
#: on SQLite they begin DEFERRED, so they neither wait for a writer nor hold one up (WAL).
READ_ONLY = "vendo_read_only"

#: SQLSTATEs after which the same transaction may simply run again: PostgreSQL's deadlock (one of
#: two transactions waiting on each other is aborted) and serialization failure.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
#: How many times :func:`run_transaction` runs a transaction that keeps failing transiently.
TRANSIENT_ATTEMPTS = 3


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that running the same transaction again may cure."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in TRANSIENT_SQLSTATES


def run_transaction(transaction: Callable[[], AbstractContextManager[Any]], work: Callable[[Any], T], *,
                    attempts: int = TRANSIENT_ATTEMPTS) -> T:
    """``work(session)`` in ``transaction()``; when it fails with a transient error (a deadlock
    with another transaction), rolled back and run again in a new transaction, after a short
    random pause, up to ``attempts`` times. Any other error is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction() as session:
                return work(session)
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            time.sleep(random.uniform(0.001, 0.01) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
#: Seconds a SQLite writer waits for the database (``PRAGMA busy_timeout``) and for its turn in
#: the process.
BUSY_TIMEOUT = 10.0
#: Connections a SQLite engine keeps open (and as many more it may open for a while).
SQLITE_POOL_SIZE = 40


class _WriterQueue:
    """One write transaction at a time per SQLite engine, queued in the process.

    SQLite allows one writer; a second ``BEGIN IMMEDIATE`` waits in SQLite's busy handler,
    which polls with sleeps growing to 100 ms, so writers of one process (the server's
    threads) lost most of their time sleeping past the moment the lock was free. Here they
    wait on a lock that hands over at once when the holder's COMMIT or ROLLBACK is done.
    Other processes still meet at SQLite's own lock. Held from BEGIN IMMEDIATE to the end of
    the transaction on the DBAPI connection; a waiter gives up after :data:`BUSY_TIMEOUT` and
    proceeds, leaving it to SQLite as before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None

    def acquire(self, dbapi_connection: Any) -> None:
        key = id(dbapi_connection)
        if self._holder == key:
            return
        if self._lock.acquire(timeout=BUSY_TIMEOUT):
            self._holder = key

    def release(self, dbapi_connection: Any) -> None:
        if self._holder is not None and self._holder == id(getattr(dbapi_connection, "dbapi_connection",
                                                                    dbapi_connection)):
            self._holder = None
            self._lock.release()


def _sqlite_transactions(engine: Engine) -> None:
    """Explicit transactions on a SQLite engine: ``BEGIN IMMEDIATE`` for writers (queued in the
    process by a :class:`_WriterQueue`), ``BEGIN`` for read-only connections."""
    queue = _WriterQueue()
    dialect = engine.dialect

    def begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
            return
        # IMMEDIATE takes the write lock at the start: a transaction that reads then writes can
        # never fail to upgrade its lock after another writer committed (SQLITE_BUSY_SNAPSHOT).
        dbapi_connection = connection.connection.dbapi_connection
        queue.acquire(dbapi_connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            queue.release(dbapi_connection)
            raise

    def ending(original: Any) -> Any:
        def end(dbapi_connection: Any) -> None:
            try:
                original(dbapi_connection)
            finally:
                queue.release(dbapi_connection)
        return end

    event.listen(engine, "begin", begin)
    # The dialect ends every transaction, the pool's reset on return included: release there,
    # once the COMMIT or ROLLBACK is done.
    dialect.do_commit = ending(dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = ending(dialect.do_rollback)  # type: ignore[method-assign]
    dialect.do_close = ending(dialect.do_close)  # type: ignore[method-assign]


#: A pooled connection idle for longer than this is pinged before use (server databases).
PING_AFTER_IDLE = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before handing it out only if it sat idle for more than
    :data:`PING_AFTER_IDLE` seconds; a dead one is replaced transparently.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round trip for every
    transaction (on a consume, 5 instead of 4). A connection used a moment ago is alive but
    for a server restart in that moment, which its statement then meets as an error (and the
    pool drops its connections), like any failure in the middle of a request.
    """
    from sqlalchemy.exc import DisconnectionError

    dialect = engine.dialect

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["vendo_idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("vendo_idle_since")
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE:
            return  # a new connection, or one used a moment ago
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's error for a dead connection
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc
        if alive is False:
            raise DisconnectionError("pooled connection is gone")

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


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
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        options = {"connect_args": {"check_same_thread": False}}
        if parsed.database not in (None, "", ":memory:"):
            # Keep a connection per server thread (anyio's pool runs up to 40): past the default
            # 5 + 10 overflow, each request opened and closed a connection (and ran the pragmas).
            options.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)
    options.update(kwargs)
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"no database driver for {mask_url(url)}: {exc}. For PostgreSQL install vendo[postgres] (psycopg 3)."
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        _sqlite_transactions(engine)
    elif not options.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine
