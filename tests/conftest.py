"""Fixtures of the cross-package tests (helpers live in support.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from support import PG_URL, Server


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
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (mandatory in CI, skipped locally when unreachable)."""
    import uuid

    import sqlalchemy

    try:
        admin = sqlalchemy.create_engine(PG_URL)
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        message = f"PostgreSQL unreachable at {PG_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (PostgreSQL runs are mandatory in CI)")
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
