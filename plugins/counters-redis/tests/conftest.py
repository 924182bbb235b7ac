"""Fixtures of vendo-counters-redis' tests: a real Redis, and a real database.

Redis is ``VENDO_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``, a database the tests
flush: keep nothing there). Every storage test runs on SQLite and on PostgreSQL
(``VENDO_TEST_DATABASE_URL``), each PostgreSQL test in a schema of its own. Without Redis or
PostgreSQL the tests needing them are skipped locally and fail in CI (``CI`` set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import vendo_counters_redis
from vendo import CounterStoreUnavailable
from counters_redis_support import CATALOG, PLUGIN, REDIS_URL, require_redis


@pytest.fixture(autouse=True)
def _isolated_environment(vendo_isolated_environment: Path) -> None:
    """vendo-sdk's isolation for every test: no VENDO_* variable, vendo.toml or .env of the developer's."""


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A client of the test Redis database, flushed before and after the test."""
    require_redis()
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def vendo_database_url(vendo_each_database: str) -> str:
    """The database of ``vendo_kernel``, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


@pytest.fixture
def redis_kernel(vendo_kernel: Callable[..., Any], redis_client: Any) -> Callable[..., Any]:
    """``redis_kernel(url=REDIS_URL, **plugin_settings)``: a kernel whose counter store is this
    plugin's, on the test's database, with the test catalog loaded and the store initialised
    (unless unreachable)."""
    from vendo.entitlements.catalog import parse_catalog

    catalog = parse_catalog(CATALOG)

    def factory(url: str = REDIS_URL, **settings: Any) -> Any:
        kernel = vendo_kernel({PLUGIN: vendo_counters_redis}, providers={"counters": "redis"},
                              plugin_settings={PLUGIN: {"url": url, **settings}})
        assert kernel.plugin(PLUGIN).status == "ok", kernel.plugin(PLUGIN).error
        kernel.entitlements.load_catalog(catalog)
        try:  # what start-up does: a flushed Redis is initialised from the ledger
            kernel.entitlements.maintain()
        except CounterStoreUnavailable:
            pass  # a kernel on a Redis that is down
        return kernel

    return factory
