"""Fixtures of the cross-package tests (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from support import Server


@pytest.fixture(autouse=True)
def _isolated_environment(vendo_isolated_environment: Path) -> None:
    """vendo-sdk's isolation for every test: no VENDO_* variable, vendo.toml or .env of the developer's."""


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(env: dict[str, str], *args: str) -> Server:
        server = Server(env, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def postgres_url(vendo_postgres_url: str) -> str:
    """A fresh PostgreSQL schema (mandatory in CI, skipped locally when unreachable)."""
    return vendo_postgres_url
