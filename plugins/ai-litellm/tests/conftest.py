"""Fixtures of vendo-ai-litellm's gateway tests: a loopback OpenAI-compatible upstream, and
Vendo itself served by uvicorn on loopback (kernel + ai-litellm + auth-apikeys), on SQLite
and on PostgreSQL, with a plan catalog metering AI calls, tokens and spend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

import vendo_ai_litellm
import vendo_auth_apikeys
from vendo_ai_litellm.upstream import LoopbackServer, Upstream

from ai_litellm_support import CATALOG, OPERATOR_KEY, SECRET_KEY


def litellm_settings(upstream: Upstream) -> dict[str, Any]:
    """Three chat models and one embedding model, all on the loopback upstream; prices make
    one prompt token cost 1 micro-dollar and one completion token 2. ``chat-large`` (alias
    ``smart``) goes through litellm's HTTP path, the others take the direct path."""
    prices = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
    return {"api_key": OPERATOR_KEY, "api_base": upstream.base_url, "timeout": 2.0, "models": [
        {"id": "chat-small", "model": "openai/loopback-chat", **prices},
        {"id": "chat-large", "model": "openai/loopback-large", "wire": "litellm", **prices},  # through litellm
        {"id": "embed-small", "model": "openai/loopback-embed", "kind": "embedding",
         "input_cost_per_token": 0.000001, "output_cost_per_token": 0.0},
    ]}


@pytest.fixture(scope="session")
def loopback_upstream() -> Iterator[Upstream]:
    """The OpenAI-compatible upstream (accepts any key unless told otherwise)."""
    with Upstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(loopback_upstream: Upstream) -> Iterator[Upstream]:
    """The upstream, answering normally at the start and the end of each test."""
    loopback_upstream.set_mode("ok")
    yield loopback_upstream
    loopback_upstream.set_mode("ok")


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


@pytest.fixture
def vendo_database_url(database_url: str) -> str:
    """The SDK's kernels use the same databases."""
    return database_url


class Gateway:
    """Vendo on loopback with two workspaces: ``team`` (on ``plan``) and ``other`` (free),
    each owned by its own user, with an admin API key each."""

    def __init__(self, kernel: Any, server: LoopbackServer, upstream: Upstream, plan: str) -> None:
        self.kernel = kernel
        self.server = server
        self.upstream = upstream
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.operator_key = OPERATOR_KEY
        with kernel.session() as session:
            identity = kernel.identity
            self.owner = identity.create_user(session, "owner@example.com", name="Olive")
            self.member = identity.create_user(session, "member@example.com", name="Mel")
            self.outsider = identity.create_user(session, "outsider@example.com", name="Otto")
            self.team = identity.create_workspace(session, self.owner.id, "Team").id
            self.other = identity.create_workspace(session, self.outsider.id, "Other").id
            invitation, token = identity.invite(session, self.owner.id, self.team, self.member.email, "MEMBER")
            identity.accept_invitation(session, self.member.id, token)
            if plan != "free":
                kernel.entitlements.assign(session, self.team, plan)
        self.team_key = self.create_key(self.owner, self.team)
        self.other_key = self.create_key(self.outsider, self.other)

    def session_headers(self, user: Any, workspace: str | None = None) -> dict[str, str]:
        """A signed-in session of ``user`` (and the workspace header)."""
        with self.kernel.session() as session:
            pair = self.kernel.sessions.issue(session, user.id, "test")
        headers = {"Authorization": f"Bearer {pair.access_token}"}
        if workspace:
            headers["X-Vendo-Workspace"] = workspace
        return headers

    def create_key(self, user: Any, workspace: str) -> str:
        """A new API key of ``workspace`` (over HTTP, as ``user``)."""
        response = self.http.post(f"/api/v1/workspaces/{workspace}/api-keys", headers=self.session_headers(user),
                                  json={"name": "ai", "scopes": ["ai"]})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def openai(self, key: str | None = None, **options: Any) -> Any:
        """The official OpenAI client pointed at Vendo (no retries: each call is observed once)."""
        from openai import OpenAI

        return OpenAI(base_url=f"{self.server.url}/v1", api_key=key or self.team_key, max_retries=0, **options)

    def ledger(self, subject: str | None = None, feature: str | None = None) -> list[Any]:
        """Ledger entries of a subject (the team by default), oldest first."""
        from sqlalchemy import select

        from vendo.entitlements.models import LedgerEntry

        with self.kernel.session() as session:
            query = select(LedgerEntry).where(LedgerEntry.subject == (subject or self.team)).order_by(LedgerEntry.id)
            if feature:
                query = query.where(LedgerEntry.feature == feature)
            return list(session.scalars(query))

    def used(self, feature: str, subject: str | None = None) -> int:
        """The meter's current usage (holds included)."""
        return self.kernel.entitlements.check(subject or self.team, feature).used

    def events(self, type: str) -> list[dict[str, Any]]:
        """Payloads of outbox events of a type."""
        from sqlalchemy import select

        from vendo.outbox import OutboxEvent

        with self.kernel.session() as session:
            return [row.payload for row in session.scalars(select(OutboxEvent).where(OutboxEvent.type == type)
                                                          .order_by(OutboxEvent.created_at))]


@pytest.fixture
def make_gateway(database_url: str, tmp_path: Path, upstream: Upstream) -> Iterator[Callable[..., Gateway]]:
    """Build a :class:`Gateway` whose team is on ``plan``."""
    from vendo import Kernel, create_app, load_settings
    from vendo.db import migrations
    from vendo.entitlements.catalog import parse_catalog

    made: list[tuple[Any, LoopbackServer, Gateway]] = []

    def factory(plan: str = "pro", *, extra_models: tuple[dict[str, Any], ...] = (), catalog: str = CATALOG) -> Gateway:
        """``extra_models``: more ``[ai-litellm]`` model routes; ``catalog``: another plan catalog."""
        routes = litellm_settings(upstream)
        routes["models"] += list(extra_models)
        settings = load_settings(overrides={
            "data_dir": str(tmp_path / "data"), "database_url": database_url, "secret_key": SECRET_KEY,
            "plugins": {"autoload": False, "strict": True}, "outbox": {"dispatch_in_server": False},
        }, plugin_settings={"ai-litellm": routes, "auth-apikeys": {}})
        kernel = Kernel(settings, plugins={"ai-litellm": vendo_ai_litellm, "auth-apikeys": vendo_auth_apikeys})
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        import tomllib

        kernel.entitlements.load_catalog(parse_catalog(tomllib.loads(catalog)), "tests")
        server = LoopbackServer(create_app(kernel), lifespan="on").start()
        gateway = Gateway(kernel, server, upstream, plan)
        made.append((kernel, server, gateway))
        return gateway

    yield factory
    for kernel, server, gateway in made:
        gateway.http.close()
        server.stop()
        kernel.close()
