"""The SDK's authenticator contract, and the authenticator called directly (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

import vendo_auth_apikeys
from vendo_sdk.contracts import AuthenticatorContract, make_request


def seed_key(kernel: Any, *, scopes: list[str] = ("notes:read",), tier: str = "standard") -> tuple[Any, str]:
    """A user of the kernel and a key of their personal workspace (written directly, no HTTP)."""
    service = kernel.providers.get("auth", "api_key").service
    with kernel.session() as session:
        user = kernel.identity.create_user(session, f"contract-{len(scopes)}-{tier}@example.com")
        workspace = kernel.identity.memberships(session, user.id)[0]["id"]
        _row, key = service.issue(session, workspace_id=workspace, created_by=user.id, name="contract",
                                  scopes=list(scopes), environment="live", rate_limit_tier=tier)
    return user, key


class TestApiKeyAuthenticatorContract(AuthenticatorContract):
    plugin = vendo_auth_apikeys
    plugin_name = "auth-apikeys"
    provider_name = "api_key"

    @pytest.fixture
    def kernel(self, vendo_kernel: Any) -> Any:
        """The suite's kernel, seeded with a user and a real key for :meth:`valid_request`."""
        kernel = vendo_kernel({self.plugin_name: self.plugin}, plugin_settings={self.plugin_name: {}})
        self.user, self.key = seed_key(kernel)
        return kernel

    def valid_request(self) -> Any:
        return make_request(headers={"Authorization": f"Bearer {self.key}"})

    def invalid_request(self) -> Any:
        last = "A" if self.key[-1] != "A" else "B"
        return make_request(headers={"Authorization": f"Bearer {self.key[:-1]}{last}"})

    @pytest.mark.asyncio
    async def test_principal_fields(self, provider: Any) -> None:
        principal = await provider.authenticate(make_request(headers={"X-API-Key": self.key}))
        assert principal.subject == self.user.id and principal.method == "api_key"
        assert principal.credential == self.key[8:20] and principal.workspace
        assert principal.scopes == frozenset({"notes:read"})
        assert principal.attributes == {"rate_limit_tier": "standard", "key_prefix": self.key[:20] + "\u2026",
                                        "environment": "live"}

    @pytest.mark.asyncio
    @pytest.mark.parametrize("headers", [
        {}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"},
        {"X-API-Key": "sk_live_someone_elses"}, {"Authorization": "Bearer"},
    ])
    async def test_foreign_credentials_pass(self, provider: Any, headers: dict[str, str]) -> None:
        assert await provider.authenticate(make_request(headers=headers)) is None

    def test_synchronous_entry_point(self, provider: Any) -> None:
        from vendo import Unauthorized

        assert provider.authenticate_sync(self.valid_request()).subject == self.user.id
        assert provider.authenticate_sync(make_request()) is None
        with pytest.raises(Unauthorized):
            provider.authenticate_sync(self.invalid_request())

    def test_keys_still_verify_after_the_kernel_recreates_its_engine(self, kernel: Any, provider: Any) -> None:
        assert provider.authenticate_sync(self.valid_request()).subject == self.user.id
        kernel.close()  # disposes of the engine; the next use creates another
        assert provider.authenticate_sync(self.valid_request()).subject == self.user.id

    @pytest.mark.asyncio
    async def test_the_kernel_chain_tries_sessions_first_then_api_keys(self, kernel: Any) -> None:
        assert [r.name for r in kernel.providers.registered("auth")] == ["session", "api_key"]
        with kernel.session() as session:
            token = kernel.sessions.issue(session, self.user.id, "test").access_token
        session_principal = await kernel.authenticate(make_request(headers={"Authorization": f"Bearer {token}"}))
        assert session_principal.method == "session:test"
        key_principal = await kernel.authenticate(self.valid_request())
        assert key_principal.method == "api_key" and key_principal.subject == self.user.id


def test_the_installed_entry_point_loads(vendo_kernel) -> None:
    """The distribution's entry point (what `vendo serve` discovers) registers the authenticator."""
    kernel = vendo_kernel(["auth-apikeys"])
    info = kernel.plugin("auth-apikeys")
    assert info.status == "ok", info.error
    assert info.distribution == "vendo-auth-apikeys"
    assert set(info.hooks) == {"vendo_settings_model", "vendo_migrations", "vendo_register_authenticators",
                               "vendo_register_routes", "vendo_export_user_data", "vendo_erase_user_data",
                               "vendo_erase_workspace_data", "vendo_revoke_user_credentials",
                               "vendo_register_commands"}
    assert {r.name: r.plugin for r in kernel.providers.registered("auth")}["api_key"] == "auth-apikeys"
