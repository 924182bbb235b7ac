"""The vendo-sdk pytest plugin (registered through the ``pytest11`` entry point).

Fixtures for plugin authors, all function-scoped and isolated:

- ``vendo_isolated_environment``: no ``VENDO_*`` variable (``VENDO_TEST_*`` kept), ``vendo.toml``
  or ``.env`` of the developer's leaks into the test; make it autouse in a conftest.
- ``vendo_clock``: a frozen, injectable clock (``vendo_clock.advance(seconds=60)``).
- ``vendo_database_url``: a temporary SQLite database (``--vendo-database-url`` to use another).
- ``vendo_postgres_url``: a fresh PostgreSQL schema per test at ``VENDO_TEST_DATABASE_URL``
  (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), dropped afterwards; skipped
  when PostgreSQL is unreachable, a failure instead when ``CI`` is set.
- ``vendo_kernel``: ``vendo_kernel(plugins, *, plugin_settings=None, **settings)`` builds a kernel
  with only the named plugins, migrations applied, providers resolved. ``plugins`` maps names to
  plugin objects (modules), or lists names of installed entry points.
- ``vendo_client``: ``vendo_client(kernel)`` runs the kernel's HTTP app (start-up included) and
  returns a ``TestClient``.
- ``vendo_smtp_server``: ``vendo_smtp_server(tls=None|"starttls"|"ssl", users=None)`` starts a
  real SMTP server on loopback (aiosmtpd; the ``vendo-sdk[smtp]`` extra) that keeps the messages
  it receives; ``server.settings()`` are ``[email-smtp]`` settings pointing at it.

Nothing heavy is imported until a fixture is used, so installing vendo-sdk costs other test
suites nothing.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class FrozenClock:
    """A clock that only moves when told: pass it as a kernel's ``clock``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by ``delta`` or by keyword units (``seconds=``, ``days=``...)."""
        self.now += delta if delta is not None else timedelta(**units)
        return self.now

    def set(self, moment: datetime) -> None:
        """Jump to an aware datetime."""
        if moment.tzinfo is None:
            raise ValueError("FrozenClock.set needs a timezone-aware datetime")
        self.now = moment


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vendo")
    group.addoption(
        "--vendo-database-url",
        default=None,
        help="Database URL for vendo_kernel (default: a temporary SQLite file per test).",
    )


def postgres_url() -> str:
    """The PostgreSQL server tests use (``VENDO_TEST_DATABASE_URL``)."""
    return os.environ.get("VENDO_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


def postgres_unreachable(url: str | None = None) -> str | None:
    """``None`` when PostgreSQL answers at ``url``, else why not."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url or postgres_url())
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver or network failure means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@contextmanager
def postgres_schema(url: str | None = None) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server at ``url``: yields a URL whose connections
    use it (``search_path``), and drops it, with everything in it, afterwards."""
    import sqlalchemy

    base = url or postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base)
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        separator = "&" if "?" in base else "?"
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def require_postgres() -> None:
    """Skip the test when PostgreSQL is unreachable; fail it instead when ``CI`` is set."""
    reason = postgres_unreachable()
    if reason is not None:
        message = f"PostgreSQL unreachable at {postgres_url()}: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message + " (PostgreSQL runs are mandatory in CI)")
        pytest.skip(message)


@pytest.fixture
def vendo_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test (see :func:`postgres_schema`)."""
    require_postgres()
    with postgres_schema() as url:
        yield url


@pytest.fixture
def vendo_isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``VENDO_*`` variable (``VENDO_TEST_*`` settings of the test run excepted), ``vendo.toml``
    or ``.env`` of the developer's leaks into the test: the variables are removed and the test
    runs in an empty working directory, ``tmp_path / "work"``, which is returned.

    Make it apply to every test of a directory with an autouse fixture in its conftest::

        @pytest.fixture(autouse=True)
        def _isolated_environment(vendo_isolated_environment): ...
    """
    for name in list(os.environ):
        if name.startswith("VENDO_") and not name.startswith("VENDO_TEST_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def vendo_clock() -> FrozenClock:
    """A frozen clock starting at 2026-01-01T00:00Z."""
    return FrozenClock()


@pytest.fixture(params=["sqlite", "postgresql"])
def vendo_each_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs the test twice: on a fresh SQLite file, then on a fresh PostgreSQL schema dropped
    afterwards (skipped locally when PostgreSQL is unreachable, a failure in CI). Point
    ``vendo_database_url`` at it to run ``vendo_kernel``'s kernels on both::

        @pytest.fixture
        def vendo_database_url(vendo_each_database):
            return vendo_each_database
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vendo.db'}"
        return
    require_postgres()
    with postgres_schema() as url:
        yield url


@pytest.fixture
def vendo_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the kernels of this test use."""
    return request.config.getoption("--vendo-database-url") or f"sqlite:///{tmp_path / 'vendo.db'}"


@pytest.fixture
def vendo_kernel(vendo_database_url: str, vendo_clock: FrozenClock, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory of kernels with only the given plugins and a migrated temporary database."""
    from vendo.config import load_settings
    from vendo.db import migrations
    from vendo.kernel import Kernel

    made: list[Any] = []

    def factory(
        plugins: dict[str, object] | list[str] | tuple[str, ...] | None = None,
        *,
        plugin_settings: dict[str, dict[str, Any]] | None = None,
        clock: Callable[[], datetime] | None = None,
        **settings: Any,
    ) -> Any:
        values: dict[str, Any] = {"data_dir": str(tmp_path / "vendo-data"), "database_url": vendo_database_url}
        values.update(settings)
        explicit: dict[str, object] | None
        if isinstance(plugins, (list, tuple)):
            values["plugins"] = {"autoload": True, "enabled": list(plugins), **values.get("plugins", {})}
            explicit = None
        else:
            values["plugins"] = {"autoload": False, **values.get("plugins", {})}
            explicit = dict(plugins or {})
        kernel = Kernel(
            load_settings(overrides=values, plugin_settings=plugin_settings),
            plugins=explicit,
            clock=clock or vendo_clock,
        )
        made.append(kernel)
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        kernel.providers.configure(kernel.settings.providers)
        return kernel

    yield factory
    for kernel in made:
        kernel.close()


@pytest.fixture
def vendo_client() -> Iterator[Callable[[Any], Any]]:
    """Factory of HTTP clients for a kernel's app, started (lifespan) and closed per test."""
    from fastapi.testclient import TestClient

    from vendo.app import create_app

    clients: list[Any] = []

    def factory(kernel: Any, **client_options: Any) -> Any:
        client = TestClient(create_app(kernel), **client_options)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def vendo_smtp_server(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start loopback SMTP servers (see :mod:`vendo_sdk.smtp`); stopped after the test."""
    from vendo_sdk.smtp import smtp_servers

    with smtp_servers(tmp_path) as start:
        yield start
