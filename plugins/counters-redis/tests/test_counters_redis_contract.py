"""The Redis store passes vendo-sdk's counter store contract, against a real Redis, with
kernels on SQLite and PostgreSQL (the conftest's ``vendo_database_url``)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import vendo_counters_redis
from vendo_sdk.contracts import CounterStoreContract

from counters_redis_support import PLUGIN


class TestRedisCounterStore(CounterStoreContract):
    plugin = vendo_counters_redis
    plugin_name = PLUGIN
    provider_name = "redis"

    @pytest.fixture
    def kernel(self, redis_kernel: Callable[..., Any]) -> Any:
        """A kernel whose counter store is this plugin's, on the flushed test Redis."""
        return redis_kernel()
