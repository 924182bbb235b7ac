"""Fixtures of vendo-billing-local's tests: every storage test runs on SQLite and on
PostgreSQL (a schema per test, vendo-sdk's helpers), with a frozen clock and the Memento
catalog (seed 003: Basic free by default, Pro with a 14-day trial, Business, seat-based
Enterprise with at least 5 seats)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import vendo_billing_local
from vendo_sdk.pytest_plugin import FrozenClock

SECRET_KEY = "billing-local-tests-master-secret-0123456789"
CATALOG = Path(__file__).resolve().parents[3] / "examples" / "catalogs" / "memento.toml"


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VENDO_") and not name.startswith("VENDO_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


@pytest.fixture
def vendo_database_url(database_url: str) -> str:
    return database_url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


class World:
    """A served kernel with the local provider, the Memento catalog and a team workspace
    (owner, admin, member)."""

    def __init__(self, kernel: Any, client: Any) -> None:
        from vendo.entitlements.catalog import load_catalog

        self.kernel, self.client = kernel, client
        kernel.entitlements.load_catalog(load_catalog(CATALOG), source=str(CATALOG))
        with kernel.session() as session:
            identity = kernel.identity
            self.owner = identity.create_user(session, "owner@example.com", name="Olive")
            self.admin = identity.create_user(session, "admin@example.com", name="Ada")
            self.member = identity.create_user(session, "member@example.com", name="Mel")
            self.team = identity.create_workspace(session, self.owner.id, "Team").id
            for user, role in ((self.admin, "ADMIN"), (self.member, "MEMBER")):
                _invitation, token = identity.invite(session, self.owner.id, self.team, user.email, role)
                identity.accept_invitation(session, user.id, token)
        self.provider = vendo_billing_local.provider_of(kernel)

    def headers(self, user: Any = None) -> dict[str, str]:
        """Signed-in headers of ``user`` (the owner by default) acting on the team."""
        with self.kernel.session() as session:
            pair = self.kernel.sessions.issue(session, (user or self.owner).id, "test")
        return {"Authorization": f"Bearer {pair.access_token}", "X-Vendo-Workspace": self.team}

    def post(self, path: str, body: dict[str, Any] | None = None, user: Any = None, **headers: str) -> Any:
        return self.client.post(f"/api/v1/billing/{path}", json=body or {},
                                headers={**self.headers(user), **headers})

    def get(self, path: str, user: Any = None) -> Any:
        return self.client.get(f"/api/v1/billing/{path}", headers=self.headers(user))

    def checkout(self, plan: str = "pro", **body: Any) -> dict[str, Any]:
        payload = {"plan": plan, "success_url": "/done", "cancel_url": "/back", **body}
        response = self.post("checkout", payload)
        assert response.status_code == 201, response.text
        return response.json()

    def pay(self, checkout: dict[str, Any]) -> Any:
        """Open the local checkout page and press its button, over HTTP."""
        page = self.client.get(checkout["url"])
        assert page.status_code == 200 and "<form method=\"post\">" in page.text, page.text
        response = self.client.post(checkout["url"], follow_redirects=False)
        assert response.status_code == 303, response.text
        return response

    def state(self) -> dict[str, Any]:
        response = self.get("subscription")
        assert response.status_code == 200, response.text
        return response.json()

    def plan(self) -> str:
        """The plan the team's entitlements follow now."""
        return self.kernel.entitlements.entitlements(self.team)["plan"]

    def deliver(self, *events: dict[str, Any], timestamp: int | None = None, signer: Any = None) -> Any:
        """POST a signed local webhook over HTTP (events as JSON dicts)."""
        body = json.dumps({"events": list(events)}).encode()
        headers = (signer or self.provider.sign)(body, timestamp)
        return self.client.post("/api/v1/billing/webhooks/local", content=body, headers=headers)

    def outbox(self, type: str) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from vendo.outbox import OutboxEvent

        with self.kernel.session() as session:
            return [row.payload for row in session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == type).order_by(OutboxEvent.created_at))]


@pytest.fixture
def make_world(database_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[Callable[..., World]]:
    from fastapi.testclient import TestClient

    from vendo import Kernel, create_app, load_settings
    from vendo.db import migrations

    made: list[tuple[Any, Any]] = []

    def factory(plugins: dict[str, object] | None = None, local: dict[str, Any] | None = None,
                **overrides: Any) -> World:
        """``local``: the [billing-local] settings; other keyword arguments: kernel settings."""
        values: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "database_url": database_url,
                                  "secret_key": SECRET_KEY, "plugins": {"autoload": False, "strict": True},
                                  "outbox": {"dispatch_in_server": False}}
        values.update(overrides)
        settings = load_settings(overrides=values, plugin_settings={vendo_billing_local.PLUGIN_NAME: local or {}})
        kernel = Kernel(settings,
                        plugins={vendo_billing_local.PLUGIN_NAME: vendo_billing_local, **(plugins or {})}, clock=clock)
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        kernel.providers.configure(kernel.settings.providers)
        client = TestClient(create_app(kernel))
        client.__enter__()
        made.append((kernel, client))
        return World(kernel, client)

    yield factory
    for kernel, client in reversed(made):
        client.__exit__(None, None, None)
        kernel.close()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
