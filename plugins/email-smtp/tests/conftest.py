"""Fixtures of vendo-email-smtp's tests: a real SMTP server on loopback (vendo-sdk's
``vendo_smtp_server``: aiosmtpd with optional AUTH, STARTTLS or implicit TLS), and kernels
holding this plugin on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import vendo_email_smtp
from vendo_sdk.pytest_plugin import FrozenClock

PLUGIN = vendo_email_smtp.PLUGIN_NAME
SECRET_KEY = "email-smtp-tests-master-secret-0123456789abcdef"


@pytest.fixture
def smtp_server(vendo_smtp_server: Callable[..., Any]) -> Callable[..., Any]:
    """vendo-sdk's loopback SMTP servers: ``smtp_server(tls=None|"starttls"|"ssl", users={...})``."""
    return vendo_smtp_server


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def make_kernel(database_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[Callable[..., Any]]:
    """Migrated kernels holding this plugin with the given ``[email-smtp]`` settings."""
    from vendo import Kernel, load_settings
    from vendo.db import migrations

    made: list[Any] = []

    def factory(plugin_settings: dict[str, Any] | None = None, *, strict: bool = True,
                plugins: dict[str, object] | None = None, other_settings: dict[str, dict[str, Any]] | None = None,
                **overrides: Any) -> Any:
        """``plugin_settings``: the [email-smtp] table; ``plugins`` and ``other_settings``: more
        plugins and their tables; other keyword arguments: kernel setting overrides."""
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"), "database_url": database_url, "secret_key": SECRET_KEY,
            "plugins": {"autoload": False, "strict": strict},
            "outbox": {"dispatch_in_server": False, "backoff_base": 10.0, "backoff_max": 100.0},
        }
        values.update(overrides)
        tables = {PLUGIN: dict(plugin_settings or {}), **(other_settings or {})}
        settings = load_settings(overrides=values, plugin_settings=tables)
        kernel = Kernel(settings, plugins={PLUGIN: vendo_email_smtp, **(plugins or {})}, clock=clock)
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
def vendo_database_url(database_url: str) -> str:
    """The SDK's kernels (contract suite) use the same two databases as the other tests."""
    return database_url
