"""Fixtures of the cross-package tests (helpers live in support.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from support import Server


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VENDO_") and not name.startswith("VENDO_TEST_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


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
