"""Tenant isolation, proven on every route: a principal of workspace A gets 403 or 404 on
every route naming a resource of workspace B, and B is left untouched.

The routes come from the OpenAPI document of an app with every installed plugin, so a new
route (kernel or plugin) is covered the day it is added. Request bodies are generated from
the route's schema so that validation passes and the authorization check is what answers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vendo import Kernel, create_app, load_settings
from vendo.db import migrations

#: Routes that name a workspace resource but are public by design, with the reason.
PUBLIC: dict[str, str] = {}


def example(schema: dict[str, Any], components: dict[str, Any], name: str = "") -> Any:
    """A minimal value valid against ``schema`` (required fields only)."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[-1]], components, name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return example(options[0], components, name)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        return {prop: example(sub, components, prop) for prop, sub in schema.get("properties", {}).items()
                if prop in schema.get("required", [])}
    if kind == "array":
        return []
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if "email" in name:
        return "isolation@example.com"
    if name == "role":
        return "MEMBER"
    return "x" * max(1, schema.get("minLength", 1))


@pytest.fixture
def two_tenants(tmp_path, monkeypatch):
    kernel = Kernel(load_settings(overrides={"data_dir": str(tmp_path / "data"),
                                             "database_url": f"sqlite:///{tmp_path / 'vendo.db'}"}))
    kernel.load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)
    with kernel.session() as session:
        alice = kernel.identity.create_user(session, "alice@example.com")
        bob = kernel.identity.create_user(session, "bob@example.com")
        carol = kernel.identity.create_user(session, "carol@example.com")
        workspace_a = kernel.identity.create_workspace(session, alice.id, "A")
        workspace_b = kernel.identity.create_workspace(session, bob.id, "B")
        invitation, token = kernel.identity.invite(session, bob.id, workspace_b.id, "carol@example.com", "MEMBER")
        kernel.identity.accept_invitation(session, carol.id, token)
        pending, _ = kernel.identity.invite(session, bob.id, workspace_b.id, "dave@example.com", "VIEWER")
        alice_token = kernel.sessions.issue(session, alice.id, "test").access_token
    ids = {"workspace_id": workspace_b.id, "user_id": carol.id, "invitation_id": pending.id}
    client = TestClient(create_app(kernel))
    client.__enter__()
    yield kernel, client, {"Authorization": f"Bearer {alice_token}"}, ids, workspace_a.id
    client.__exit__(None, None, None)
    kernel.close()


def test_every_workspace_route_refuses_another_tenant(two_tenants) -> None:
    kernel, client, headers, ids, _own = two_tenants
    document = client.get("/openapi.json").json()
    components = document.get("components", {}).get("schemas", {})
    checked, leaks = [], []
    for path, operations in document["paths"].items():
        if "{workspace_id}" not in path or path in PUBLIC:
            continue
        for method, operation in operations.items():
            url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "unknown-id"), path)
            body = None
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                body = example(content["schema"], components)
            response = client.request(method.upper(), url, headers=headers, json=body)
            checked.append(f"{method.upper()} {path}")
            if response.status_code not in (403, 404):
                leaks.append(f"{method.upper()} {path} -> {response.status_code} {response.text[:200]}")
    assert checked, "no workspace route found: the OpenAPI enumeration is broken"
    assert not leaks, "routes reachable from another tenant:\n" + "\n".join(leaks)
    with kernel.session() as session:
        members = kernel.identity.members(session, _owner_of(kernel, ids["workspace_id"]), ids["workspace_id"])
    assert sorted(m["email"] for m in members) == ["bob@example.com", "carol@example.com"]


def test_routes_are_reachable_by_their_own_tenant(two_tenants) -> None:
    """The same enumeration, as a check that the probe itself works: A reaches A's own workspace."""
    _kernel, client, headers, _ids, own = two_tenants
    assert client.get(f"/api/v1/workspaces/{own}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/workspaces/{own}/members", headers=headers).status_code == 200


def _owner_of(kernel, workspace_id):
    from sqlalchemy import select

    from vendo.identity.models import Membership

    with kernel.session() as session:
        return session.scalar(select(Membership.user_id).where(Membership.workspace_id == workspace_id,
                                                               Membership.role == "OWNER"))
