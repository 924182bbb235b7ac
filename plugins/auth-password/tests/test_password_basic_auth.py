"""The optional HTTP Basic authenticator: the SDK's contract suite, and real requests."""

from __future__ import annotations

import base64

import pyotp
import pytest
import vendo_auth_password
from vendo_sdk.contracts import AuthenticatorContract, make_request

EMAIL, PASSWORD = "ada@example.com", "Correct-Horse-42"
CHEAP = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


class TestPasswordBasicAuthenticator(AuthenticatorContract):
    plugin = vendo_auth_password
    plugin_name = "auth-password"
    provider_name = "password"
    plugin_settings = {"basic_auth": True, **CHEAP}

    @pytest.fixture
    def kernel(self, vendo_kernel):
        kernel = vendo_kernel({self.plugin_name: self.plugin}, plugin_settings={self.plugin_name: self.plugin_settings})
        vendo_auth_password.service_for(kernel).register(EMAIL, PASSWORD)
        return kernel

    def valid_request(self):
        return make_request(headers=basic(EMAIL, PASSWORD))

    def invalid_request(self):
        return make_request(headers=basic(EMAIL, "Wrong-password-1"))

    def foreign_request(self):
        return make_request(headers={"Authorization": "Bearer eyJ.something.else"})

    @pytest.mark.asyncio
    async def test_malformed_basic_credentials_are_rejected(self, provider):
        from vendo import Unauthorized

        with pytest.raises(Unauthorized):
            await provider.authenticate(make_request(headers={"Authorization": "Basic !!!"}))


def test_basic_auth_over_http(make_kernel, make_api, clock):
    api = make_api(make_kernel(basic_auth=True, lockout_threshold=2))
    api.register(EMAIL, PASSWORD)
    response = api.client.get("/api/v1/me", headers=basic(EMAIL, PASSWORD))
    assert response.status_code == 200 and response.json()["method"] == "password:basic"
    assert api.client.get("/api/v1/me", headers=basic("nobody@example.com", PASSWORD)).status_code == 401
    for _ in range(2):
        assert api.client.get("/api/v1/me", headers=basic(EMAIL, "Wrong-password-1")).status_code == 401
    locked = api.client.get("/api/v1/me", headers=basic(EMAIL, PASSWORD))
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "account_locked"


def test_basic_auth_refuses_accounts_with_two_factor(make_kernel, make_api, clock):
    api = make_api(make_kernel(basic_auth=True))
    token = api.register(EMAIL, PASSWORD)["access_token"]
    secret = api.post("/auth/2fa/setup", token=token).json()["secret"]
    api.post("/auth/2fa/enable", {"code": pyotp.TOTP(secret).at(clock.now.timestamp())}, token=token)
    response = api.client.get("/api/v1/me", headers=basic(EMAIL, PASSWORD))
    assert response.status_code == 401 and response.json()["error"]["code"] == "totp_required"


def test_basic_auth_is_off_by_default(api):
    api.register(EMAIL, PASSWORD)
    response = api.client.get("/api/v1/me", headers=basic(EMAIL, PASSWORD))
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_required"
