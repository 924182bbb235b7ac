"""The kernel's SQL counter store passes vendo-sdk's counter store contract, on SQLite and
PostgreSQL (``database_url`` of the kernel's conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from vendo_sdk.contracts import CounterStoreContract


@pytest.fixture
def vendo_database_url(database_url: str) -> str:
    """The contract's kernels use the kernel tests' databases: SQLite, then PostgreSQL."""
    return database_url


class TestSQLCounterStore(CounterStoreContract):
    plugin_name = "core"
    provider_name = "sql"

    @pytest.fixture
    def kernel(self, vendo_kernel: Any) -> Any:
        """A kernel with its built-ins only: the ``sql`` store is the built-in ``core`` plugin's."""
        return vendo_kernel({})
