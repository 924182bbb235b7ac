"""Fixtures of vendo-auth-apikeys' tests.

Every test that touches storage runs twice: on SQLite and on PostgreSQL
(``VENDO_TEST_DATABASE_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
each PostgreSQL test in a schema of its own. Without PostgreSQL the PostgreSQL variants are
skipped locally and fail in CI (``CI`` set). The pattern is the kernel's (core/tests/conftest.py),
copied so this package's tests stand alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import vendo_auth_apikeys
from vendo_sdk.pytest_plugin import FrozenClock

SECRET_KEY = "apikeys-tests-master-secret-0123456789abcdef"
PLUGIN = vendo_auth_apikeys.PLUGIN_NAME


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh, empty database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


@pytest.fixture
def vendo_database_url(database_url: str) -> str:
    """The SDK's kernels (contract suite) use the same two databases as the other tests."""
    return database_url


@pytest.fixture
def clock() -> FrozenClock:
    """The frozen clock of this test's kernels (2026-01-01T00:00Z until advanced)."""
    return FrozenClock()


@pytest.fixture
def make_kernel(database_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[Callable[..., Any]]:
    """Build migrated kernels holding only this plugin (and the built-in ``core``)."""
    from vendo import Kernel, load_settings
    from vendo.db import migrations

    made: list[Any] = []

    def factory(plugin_settings: dict[str, Any] | None = None, *, plugins: dict[str, object] | None = None,
                **overrides: Any) -> Any:
        """``plugin_settings``: the [auth-apikeys] table; ``plugins``: more plugin objects by name;
        other keyword arguments: kernel setting overrides."""
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"), "database_url": database_url, "secret_key": SECRET_KEY,
            "plugins": {"autoload": False, "strict": True}, "outbox": {"dispatch_in_server": False},
        }
        values.update(overrides)
        settings = load_settings(overrides=values, plugin_settings={PLUGIN: dict(plugin_settings or {})})
        kernel = Kernel(settings, plugins={PLUGIN: vendo_auth_apikeys, **(plugins or {})}, clock=clock)
        made.append(kernel)
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        kernel.providers.configure(kernel.settings.providers)
        return kernel

    yield factory
    for kernel in made:
        kernel.close()


class World:
    """A kernel served over HTTP, with a team workspace holding one member of each role and
    a second team (``other``) owned by someone who is not a member of the first.

    ``tag`` keeps the email addresses of several worlds on one database apart."""

    def __init__(self, kernel: Any, client: Any, tag: str = "") -> None:
        self.kernel = kernel
        self.client = client
        with kernel.session() as session:
            identity = kernel.identity
            self.owner = identity.create_user(session, f"owner{tag}@example.com", name="Olive")
            self.admin = identity.create_user(session, f"admin{tag}@example.com", name="Ada")
            self.member = identity.create_user(session, f"member{tag}@example.com", name="Mel")
            self.viewer = identity.create_user(session, f"viewer{tag}@example.com", name="Vic")
            self.outsider = identity.create_user(session, f"outsider{tag}@example.com", name="Otto")
            self.team = identity.create_workspace(session, self.owner.id, "Team").id
            self.other = identity.create_workspace(session, self.outsider.id, "Other team").id
            for user, role in ((self.admin, "ADMIN"), (self.member, "MEMBER"), (self.viewer, "VIEWER")):
                _invitation, token = identity.invite(session, self.owner.id, self.team, user.email, role)
                identity.accept_invitation(session, user.id, token)

    def headers(self, user: Any) -> dict[str, str]:
        """A fresh signed-in session of ``user`` (valid at the kernel's current time)."""
        with self.kernel.session() as session:
            pair = self.kernel.sessions.issue(session, user.id, "test")
        return {"Authorization": f"Bearer {pair.access_token}"}

    @staticmethod
    def bearer(key: str) -> dict[str, str]:
        """Headers presenting an API key as a bearer token."""
        return {"Authorization": f"Bearer {key}"}

    def keys_url(self, workspace: str | None = None, *rest: str) -> str:
        """``/api/v1/workspaces/<workspace>/api-keys[/...]`` (the team's by default)."""
        return "/".join([f"/api/v1/workspaces/{workspace or self.team}/api-keys", *rest])

    def create_key(self, user: Any = None, workspace: str | None = None, **body: Any) -> dict[str, Any]:
        """Create a key over HTTP (as the team's admin by default) and return the 201 body."""
        payload = {"name": "test key", "scopes": ["notes:read"], **body}
        response = self.client.post(self.keys_url(workspace), json=payload, headers=self.headers(user or self.admin))
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def make_world(make_kernel: Callable[..., Any]) -> Iterator[Callable[..., World]]:
    """Build a :class:`World` with the given plugin settings and kernel overrides."""
    from fastapi.testclient import TestClient

    from vendo import create_app

    clients: list[Any] = []

    def factory(plugin_settings: dict[str, Any] | None = None, **overrides: Any) -> World:
        kernel = make_kernel(plugin_settings, **overrides)  # plugins=... passes through
        client = TestClient(create_app(kernel))
        client.__enter__()
        clients.append(client)
        return World(kernel, client, tag=str(len(clients)) if len(clients) > 1 else "")

    yield factory
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    """A :class:`World` with the default settings."""
    return make_world()
