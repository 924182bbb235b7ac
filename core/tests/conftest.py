"""Shared fixtures of the kernel's tests.

Every test that touches storage runs twice: on SQLite and on PostgreSQL
(``VENDO_TEST_DATABASE_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
each PostgreSQL test in a schema of its own (vendo-sdk's ``postgres_schema``). Without
PostgreSQL the PostgreSQL variants are skipped locally and fail in CI (``CI`` set), so CI can
never pass without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from vendo.config import load_settings
from vendo.kernel import Kernel
from vendo_sdk.pytest_plugin import postgres_schema

@pytest.fixture(autouse=True)
def _isolated_environment(vendo_isolated_environment: Path) -> None:
    """vendo-sdk's isolation for every test: no VENDO_* variable, vendo.toml or .env of the developer's."""


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh, empty database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


@pytest.fixture
def make_kernel(tmp_path: Path) -> Iterator[Callable[..., Kernel]]:
    """Build kernels with only the given plugins (entry points off unless asked)."""
    made: list[Kernel] = []

    def factory(plugins: dict[str, object] | None = None, *, database_url: str | None = None,
                autoload: bool = False, controls: dict[str, Any] | None = None, clock: Any = None,
                **overrides: Any) -> Kernel:
        """``plugins``: objects registered by name; ``controls``: the [plugins] settings;
        other keyword arguments: kernel setting overrides."""
        values: dict[str, Any] = {"data_dir": str(tmp_path / "data")}
        if database_url:
            values["database_url"] = database_url
        values.update(overrides)
        values["plugins"] = {"autoload": autoload, **(controls or {})}
        kernel = Kernel(load_settings(overrides=values), plugins=plugins, clock=clock)
        made.append(kernel)
        return kernel

    yield factory
    for kernel in made:
        kernel.close()


@pytest.fixture
def migrated_kernel(make_kernel: Callable[..., Kernel], database_url: str) -> Callable[..., Kernel]:
    """Build a loaded kernel on ``database_url`` with every migration applied."""
    from vendo.db import migrations

    def factory(plugins: dict[str, object] | None = None, **overrides: Any) -> Kernel:
        kernel = make_kernel(plugins, database_url=database_url, **overrides).load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        return kernel

    return factory


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Install a plugin distribution the way pip would leave it (module + dist-info with
    entry points) in a directory put on ``sys.path``, so entry-point discovery finds it."""
    import importlib
    import sys

    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def install(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "1.0.0",
                summary: str = "A test plugin") -> Path:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nSummary: {summary}\n")
        lines = ["[vendo.plugins]"] + [f"{name} = {target}" for name, target in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(source)
            created.append(module)
        importlib.invalidate_caches()
        return site

    yield install
    for module in created:
        sys.modules.pop(module, None)

