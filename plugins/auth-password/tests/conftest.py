"""Fixtures of the auth-password plugin's tests.

Every storage test runs twice: on SQLite and on PostgreSQL (``VENDO_TEST_DATABASE_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), each PostgreSQL test in a
schema of its own. Without PostgreSQL the PostgreSQL variants are skipped locally and fail
in CI (``CI`` set). Kernels hold only this plugin and a mailbox plugin subscribing to the
outbox, with a frozen clock and argon2 made cheap through the plugin's settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

#: Cheap argon2 parameters for tests (production uses argon2-cffi's defaults).
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh, empty database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


class Mailbox:
    """A plugin subscribing to the outbox, as the notifier will: it keeps what it receives."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def vendo_on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def clock() -> Any:
    """A frozen clock starting at 2026-01-01T00:00Z (``clock.advance(seconds=...)``)."""
    from vendo_sdk.pytest_plugin import FrozenClock

    return FrozenClock()


@pytest.fixture
def make_kernel(tmp_path: Path, database_url: str, clock: Any) -> Iterator[Callable[..., Any]]:
    """``make_kernel(**plugin_settings)``: a migrated kernel with this plugin (cheap argon2
    unless overridden), the mailbox plugin and the frozen ``clock``."""
    import vendo_auth_password
    from vendo.config import load_settings
    from vendo.db import migrations
    from vendo.kernel import Kernel

    made: list[Any] = []

    def factory(**plugin_settings: Any) -> Any:
        settings = load_settings(
            overrides={"data_dir": str(tmp_path / "data"), "database_url": database_url,
                       "plugins": {"autoload": False}, "outbox": {"dispatch_in_server": False}},
            plugin_settings={"auth-password": {**CHEAP_ARGON2, **plugin_settings}},
        )
        kernel = Kernel(settings, plugins={"auth-password": vendo_auth_password, "mailbox": Mailbox()}, clock=clock)
        made.append(kernel)
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        return kernel

    yield factory
    for kernel in made:
        kernel.close()


@pytest.fixture
def kernel(make_kernel: Callable[..., Any]) -> Any:
    """A kernel with the plugin's default settings (and cheap argon2)."""
    return make_kernel()


@pytest.fixture
def make_client() -> Iterator[Callable[[Any], Any]]:
    """``make_client(kernel)``: a started ``TestClient`` of ``create_app(kernel)``."""
    from fastapi.testclient import TestClient
    from vendo import create_app

    clients: list[Any] = []

    def factory(kernel: Any) -> Any:
        client = TestClient(create_app(kernel))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        client.__exit__(None, None, None)


class Api:
    """Small helpers over a client, so tests read as the user's steps."""

    PASSWORD = "Correct-Horse-42"

    def __init__(self, client: Any, kernel: Any) -> None:
        self.client = client
        self.kernel = kernel

    def post(self, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post(f"/api/v1{path}", json=body if body is not None else {}, headers=headers)

    def get(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/api/v1{path}", headers=headers)

    def register(self, email: str = "ada@example.com", password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        response = self.post("/auth/register", {"email": email, "password": password, **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, email: str = "ada@example.com", password: str = PASSWORD, **extra: Any) -> Any:
        return self.post("/auth/login", {"email": email, "password": password, **extra})

    def me(self, token: str) -> dict[str, Any]:
        response = self.get("/me", token)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every outbox event written (oldest first), optionally of one type."""
        from sqlalchemy import select
        from vendo.outbox import OutboxEvent

        with self.kernel.session() as session:
            rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
            return [{"type": r.type, "payload": r.payload} for r in rows if type is None or r.type == type]

    #: The email template that carries the token of each domain event.
    TOKEN_TEMPLATES = {"auth.password_reset.requested": ("password_reset", "reset_url"),
                       "auth.email_verification.requested": ("email_verification", "verify_url")}

    def mails(self, template: str | None = None) -> list[dict[str, Any]]:
        """The ``notification.requested`` payloads (oldest first, optionally of one template),
        their context opened as the notifier gets it: sealed values merged in."""
        mails = [e["payload"] for e in self.events("notification.requested")
                 if template is None or e["payload"]["template"] == template]
        return [{**mail, "context": self.kernel.notifications.context_of(mail)} for mail in mails]

    def tokens(self, type: str) -> list[str]:
        """The tokens emailed for a domain event type, oldest first: read from the link of
        the ``notification.requested`` event, sealed there (opened as the notifier does)."""
        from urllib.parse import parse_qs, urlsplit

        template, link = self.TOKEN_TEMPLATES[type]
        return [parse_qs(urlsplit(mail["context"][link]).query)["token"][0] for mail in self.mails(template)]

    def last_token(self, type: str) -> str:
        tokens = self.tokens(type)
        assert tokens, f"no email for {type} in the outbox"
        return tokens[-1]

    def audit(self, action: str | None = None) -> list[dict[str, Any]]:
        """Every audit entry (oldest first), optionally of one action."""
        from sqlalchemy import select
        from vendo.identity.models import AuditEntry

        with self.kernel.session() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
            return [self.kernel.audit.as_dict(r) for r in rows if action is None or r.action == action]


@pytest.fixture
def make_api(make_client: Callable[[Any], Any]) -> Callable[[Any], Api]:
    """``make_api(kernel)``: an :class:`Api` over a started client of that kernel."""
    return lambda kernel: Api(make_client(kernel), kernel)


@pytest.fixture
def api(make_api: Callable[[Any], Api], kernel: Any) -> Api:
    """An :class:`Api` over the default kernel."""
    return make_api(kernel)


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """An error body without its (per-request) request id."""
    error = dict(body["error"])
    error.pop("request_id", None)
    return {"error": error}


@pytest.fixture
def strip_request_id() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The error body without its per-request ``request_id``."""
    return without_request_id
