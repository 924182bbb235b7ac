"""The authorization code flow against a real OpenID provider (npm ``oidc-provider``) on
loopback, through Vendo's HTTP app, on SQLite and PostgreSQL.

Error codes chosen for the callback: a provider answering ``error=access_denied`` (the person
cancelled) is 502 ``provider_error`` with ``details.error == "access_denied"``, like every
error the provider reports; a bad, expired, replayed or foreign ``state`` is 400 ``invalid_state``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from vendo import hookimpl
from vendo_auth_oidc.models import IdentityLink, LoginState

LOGIN = "/api/v1/auth/oidc/{}/login"


def start(client: Any, provider: str = "local", **params: Any) -> str:
    """Vendo's login redirect: the provider's authorization URL."""
    response = client.get(LOGIN.format(provider), params=params, follow_redirects=False)
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.headers["location"]


def sign_in(client: Any, browser: Any, login: str, provider: str = "local", **params: Any) -> Any:
    """The whole flow: login, the provider's pages as ``login``, then Vendo's callback."""
    callback = browser.authorize(start(client, provider, **params), login)
    return client.get(callback, follow_redirects=False)


def me(client: Any, tokens: dict[str, Any]) -> dict[str, Any]:
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response: Any) -> dict[str, Any]:
    return response.json()["error"]


def links(kernel: Any) -> list[IdentityLink]:
    with kernel.session() as session:
        return list(session.scalars(select(IdentityLink).order_by(IdentityLink.created_at)))


def audit_actions(kernel: Any) -> list[tuple[str, str, dict[str, Any]]]:
    from vendo.identity.models import AuditEntry

    with kernel.session() as session:
        return [(e.action, e.outcome, e.details) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


@pytest.fixture
def kernel(oidc_kernel: Any, oidc_provider: Any) -> Any:
    return oidc_kernel(oidc_provider.settings(allowed_redirect_origins=["https://app.example.test"]))


@pytest.fixture
def client(app_client: Any, kernel: Any) -> Any:
    return app_client(kernel)


def test_login_redirects_to_the_provider_with_pkce_state_and_nonce(client: Any, oidc_provider: Any) -> None:
    location = start(client)
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert location.startswith(f"{oidc_provider.issuer}/auth?")
    assert query["response_type"] == "code" and query["client_id"] == oidc_provider.client_id
    assert query["redirect_uri"] == "http://testserver/api/v1/auth/oidc/local/callback"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 32
    assert query["scope"] == "openid email profile"
    assert "code_verifier" not in location and oidc_provider.client_secret not in location


def test_new_user_signs_up_and_the_tokens_work(client: Any, kernel: Any, browser: Any) -> None:
    response = sign_in(client, browser, "ada")
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert response.headers["cache-control"] == "no-store"
    profile = me(client, tokens)
    assert profile["email"] == "ada@example.test" and profile["name"] == "User ada"
    assert profile["email_verified"] is True and profile["method"] == "session:oidc:local"
    assert profile["workspaces"][0]["role"] == "OWNER"
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    [link] = links(kernel)
    assert (link.provider, link.subject, link.user_id, link.email) == ("local", "ada", profile["id"],
                                                                       "ada@example.test")
    actions = [(action, outcome) for action, outcome, _ in audit_actions(kernel)]
    assert ("user.created", "success") in actions
    assert ("auth.oidc.linked", "success") in actions and ("auth.oidc.sign_in", "success") in actions


def test_second_sign_in_is_the_same_user(client: Any, kernel: Any, browser: Any, app_client: Any) -> None:
    first = me(client, sign_in(client, browser, "bea").json())
    second_browser = type(browser)()
    try:
        again = sign_in(app_client(kernel), second_browser, "bea")
    finally:
        second_browser.close()
    assert me(client, again.json())["id"] == first["id"]
    assert len(links(kernel)) == 1
    from vendo.identity.models import User

    with kernel.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_links_an_existing_account_by_verified_email(client: Any, kernel: Any, browser: Any) -> None:
    with kernel.session() as session:
        existing = kernel.identity.create_user(session, "Cleo@Example.test", name="Cleo", method="password")
        old = kernel.sessions.issue(session, existing.id, "password")
    tokens = sign_in(client, browser, "cleo").json()
    profile = me(client, tokens)
    assert profile["id"] == existing.id and profile["email"] == "Cleo@Example.test"
    assert profile["email_verified"] is True  # the provider verified the address
    [link] = links(kernel)
    assert link.user_id == existing.id
    linked = [details for action, _, details in audit_actions(kernel) if action == "auth.oidc.linked"]
    assert linked == [{"provider": "local", "by": "verified_email"}]
    # The account was created without proving the address: its earlier sessions end.
    refused = client.post("/api/v1/auth/refresh", json={"refresh_token": old.refresh_token})
    assert refused.status_code == 401


class Credentials:
    """A sign-in plugin beside OIDC (a password store): what the account's creator set."""

    def __init__(self) -> None:
        self.revoked: list[tuple[str, str]] = []

    @hookimpl
    def vendo_revoke_user_credentials(self, user_id: str, reason: str) -> None:
        self.revoked.append((user_id, reason))


def test_linking_an_unverified_account_revokes_its_other_credentials(oidc_kernel: Any, oidc_provider: Any,
                                                                     app_client: Any, browser: Any) -> None:
    """Account pre-hijacking: someone registered the address without proving it; its verified
    owner signs in through the provider, and every credential the squatter set is revoked."""
    credentials = Credentials()
    kernel = oidc_kernel(oidc_provider.settings(), plugins={"credentials": credentials})
    with kernel.session() as session:
        squatted = kernel.identity.create_user(session, "gus@example.test", method="password").id
        verified = kernel.identity.create_user(session, "hal@example.test", method="password", verified=True).id
    client = app_client(kernel)
    assert me(client, sign_in(client, browser, "gus").json())["id"] == squatted
    assert credentials.revoked == [(squatted, "account_claimed")]
    claims = [details for action, _, details in audit_actions(kernel) if action == "identity.account.claimed"]
    assert claims == [{"method": "oidc:local"}]
    second_browser = type(browser)()
    try:
        assert me(client, sign_in(client, second_browser, "hal").json())["id"] == verified
    finally:
        second_browser.close()
    assert credentials.revoked == [(squatted, "account_claimed")]  # a verified owner's credentials stay


def test_linking_keeps_sessions_of_an_already_verified_account(client: Any, kernel: Any, browser: Any) -> None:
    with kernel.session() as session:
        existing = kernel.identity.create_user(session, "dora@example.test", verified=True, method="password")
        old = kernel.sessions.issue(session, existing.id, "password")
    assert me(client, sign_in(client, browser, "dora").json())["id"] == existing.id
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": old.refresh_token}).status_code == 200


def test_unverified_email_matching_an_account_is_409_and_never_linked(client: Any, kernel: Any,
                                                                       browser: Any) -> None:
    with kernel.session() as session:
        kernel.identity.create_user(session, "unverified-eve@example.test", verified=True, method="password")
    response = sign_in(client, browser, "unverified-eve")
    assert response.status_code == 409
    assert error_of(response)["code"] == "email_unverified"
    assert links(kernel) == []
    failed = [(outcome, details) for action, outcome, details in audit_actions(kernel) if action == "auth.oidc.failed"]
    assert failed == [("failure", {"provider": "local", "reason": "email_unverified"})]


def test_unverified_email_of_a_new_user_creates_an_unverified_account(client: Any, browser: Any) -> None:
    profile = me(client, sign_in(client, browser, "unverified-fay").json())
    assert profile["email"] == "unverified-fay@example.test" and profile["email_verified"] is False


def test_replayed_state_is_400(client: Any, kernel: Any, browser: Any) -> None:
    callback = browser.authorize(start(client), "gus")
    assert client.get(callback).status_code == 200
    replay = client.get(callback)
    assert replay.status_code == 400 and error_of(replay)["code"] == "invalid_state"
    assert len(links(kernel)) == 1


def test_forged_or_missing_state_is_400(client: Any, kernel: Any) -> None:
    start(client)  # a real pending sign-in exists; a made-up state still does not match it
    forged = client.get("/api/v1/auth/oidc/local/callback", params={"code": "abc", "state": "forged-state"})
    assert forged.status_code == 400 and error_of(forged)["code"] == "invalid_state"
    missing = client.get("/api/v1/auth/oidc/local/callback", params={"code": "abc"})
    assert missing.status_code == 400 and error_of(missing)["code"] == "invalid_state"
    assert "request_id" in error_of(missing)


def test_state_of_another_provider_is_400(oidc_kernel: Any, oidc_provider: Any, app_client: Any,
                                          browser: Any) -> None:
    settings = oidc_provider.settings()
    settings["providers"]["other"] = dict(settings["providers"]["local"])
    client = app_client(oidc_kernel(settings))
    callback = browser.authorize(start(client, "local"), "hal")
    crossed = client.get(callback.replace("/local/callback", "/other/callback"))
    assert crossed.status_code == 400 and error_of(crossed)["code"] == "invalid_state"


def test_expired_state_is_400(client: Any, browser: Any, clock: Any) -> None:
    callback = browser.authorize(start(client), "ivy")
    clock.advance(601)  # state_ttl is 600 s
    expired = client.get(callback)
    assert expired.status_code == 400 and error_of(expired)["code"] == "invalid_state"


def test_callback_from_another_browser_is_400(client: Any, kernel: Any, browser: Any, app_client: Any) -> None:
    callback = browser.authorize(start(client), "jon")
    stranger = app_client(kernel)  # no cookie from the login
    refused = stranger.get(callback)
    assert refused.status_code == 400 and error_of(refused)["code"] == "invalid_state"
    assert "another browser" in error_of(refused)["message"]
    again = client.get(callback)  # the state was used up by the refused attempt
    assert again.status_code == 400


def test_access_denied_at_the_provider_is_502_provider_error(client: Any, kernel: Any, browser: Any) -> None:
    callback = browser.authorize(start(client), "kim", cancel=True)
    assert "error=access_denied" in callback
    response = client.get(callback)
    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "provider_error" and error["details"]["error"] == "access_denied"
    assert links(kernel) == []


def test_bad_code_is_502_and_reveals_no_secret(client: Any, oidc_provider: Any) -> None:
    location = start(client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    response = client.get("/api/v1/auth/oidc/local/callback", params={"code": "not-a-real-code", "state": state})
    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "provider_error" and error["details"]["error"] == "invalid_grant"
    assert oidc_provider.client_secret not in response.text and "not-a-real-code" not in response.text


def test_authorization_response_from_another_issuer_is_refused(client: Any) -> None:
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    response = client.get("/api/v1/auth/oidc/local/callback",
                          params={"code": "abc", "state": state, "iss": "https://attacker.example"})
    assert response.status_code == 502 and error_of(response)["code"] == "provider_error"
    assert "another issuer" in error_of(response)["message"]


def test_next_on_an_allowed_origin_gets_the_tokens_in_the_fragment(client: Any, browser: Any) -> None:
    response = sign_in(client, browser, "lea", next="https://app.example.test/welcome?tab=1")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path, location.query) == (
        "https", "app.example.test", "/welcome", "tab=1")
    tokens = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    assert tokens["token_type"] == "bearer"
    assert me(client, tokens)["email"] == "lea@example.test"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_next_off_the_allow_list_is_400_and_nothing_is_stored(client: Any, kernel: Any) -> None:
    for target in ("https://evil.example/steal", "//evil.example/x", "javascript:alert(1)",
                   "https://app.example.test@evil.example/", "http://app.example.test/"):
        response = client.get(LOGIN.format("local"), params={"next": target}, follow_redirects=False)
        assert response.status_code == 400, target
        assert error_of(response)["code"] == "invalid_redirect"
    with kernel.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginState)) == 0


def test_unknown_provider_is_404(client: Any) -> None:
    for path in ("/api/v1/auth/oidc/nope/login", "/api/v1/auth/oidc/nope/callback?code=a&state=b"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 404 and error_of(response)["code"] == "unknown_provider"


def test_providers_are_listed_without_secrets(client: Any, oidc_provider: Any) -> None:
    response = client.get("/api/v1/auth/oidc/providers")
    assert response.json() == {"data": [{"name": "local", "kind": "oidc", "display_name": "local",
                                         "login_url": "/api/v1/auth/oidc/local/login"}]}
    assert oidc_provider.client_secret not in response.text


def test_unreachable_discovery_is_502_and_nothing_is_stored(oidc_kernel: Any, app_client: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kernel = oidc_kernel({"redirect_base_url": "http://testserver", "providers": {
        "down": {"issuer": f"http://127.0.0.1:{port}", "client_id": "x", "client_secret": "y"}}})
    response = app_client(kernel).get(LOGIN.format("down"), follow_redirects=False)
    assert response.status_code == 502 and error_of(response)["code"] == "provider_error"
    assert "discovery document" in error_of(response)["message"]
    with kernel.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginState)) == 0


def test_gdpr_export_and_erasure(client: Any, kernel: Any, browser: Any, app_client: Any) -> None:
    tokens = sign_in(client, browser, "max").json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    document = client.get("/api/v1/me/export", headers=auth).json()
    [linked] = document["plugins"]["auth-oidc"]["linked_accounts"]
    assert linked["provider"] == "local" and linked["subject"] == "max"
    assert linked["email_at_link_time"] == "max@example.test"
    assert tokens["access_token"] not in str(document) and tokens["refresh_token"] not in str(document)
    user_id = me(client, tokens)["id"]
    assert client.delete("/api/v1/me", headers=auth).status_code == 204
    assert links(kernel) == []
    second_browser = type(browser)()
    try:
        again = me(client, sign_in(app_client(kernel), second_browser, "max").json())
    finally:
        second_browser.close()
    assert again["id"] != user_id  # a new account: nothing of the erased one remains linked


def test_extra_params_reach_the_provider(oidc_kernel: Any, oidc_provider: Any, app_client: Any) -> None:
    client = app_client(oidc_kernel(oidc_provider.settings(provider={"extra_params": {"prompt": "login"}})))
    query = parse_qs(urlsplit(start(client)).query)
    assert query["prompt"] == ["login"]


def test_nothing_secret_is_logged(client: Any, kernel: Any, browser: Any, oidc_provider: Any,
                                  caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from vendo_auth_oidc.flows import VERIFIER_PURPOSE

    caplog.set_level(logging.DEBUG)
    tokens = sign_in(client, browser, "ned").json()
    with kernel.session() as session:
        [row] = session.scalars(select(LoginState)).all()
        verifier = kernel.secrets.decrypt(VERIFIER_PURPOSE, row.code_verifier)
    assert row.used_at is not None and verifier not in row.code_verifier  # kept encrypted, used up
    logged = caplog.text
    assert "HTTP Request" in logged  # the calls to the provider were logged...
    for secret in (oidc_provider.client_secret, verifier, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in logged  # ...without any secret


def test_id_token_not_signed_by_the_provider_is_rejected(oidc_provider: Any) -> None:
    """A token signed with an unknown key makes the plugin re-read the provider's real JWKS
    (key rotation), then reject it as ``invalid_id_token`` (502)."""
    import time

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from vendo import VendoError
    from vendo_auth_oidc.settings import Settings
    from vendo_auth_oidc.upstream import make_upstream

    settings = Settings.model_validate(oidc_provider.settings())
    upstream = make_upstream("local", settings.providers["local"], settings)
    now = int(time.time())
    forged = jwt.encode({"alg": "RS256", "kid": "not-the-providers"},
                        {"iss": oidc_provider.issuer, "sub": "ada", "aud": oidc_provider.client_id, "iat": now,
                         "exp": now + 60, "nonce": "n"},
                        RSAKey.generate_key(2048, parameters={"kid": "not-the-providers"}))
    with pytest.raises(VendoError) as caught:
        upstream.verify_id_token(forged, nonce="n", now=now, access_token=None)
    assert caught.value.code == "invalid_id_token" and caught.value.status_code == 502
    assert "not-the-providers" in caught.value.message


def test_public_client_without_secret_relies_on_pkce(oidc_kernel: Any, oidc_provider: Any, app_client: Any,
                                                     browser: Any) -> None:
    settings = {"redirect_base_url": "http://testserver", "providers": {"public": {
        "issuer": oidc_provider.issuer, "client_id": oidc_provider.public_client_id, "scopes": ["openid", "email"]}}}
    client = app_client(oidc_kernel(settings))
    response = sign_in(client, browser, "oli", provider="public")
    assert me(client, response.json())["email"] == "oli@example.test"
