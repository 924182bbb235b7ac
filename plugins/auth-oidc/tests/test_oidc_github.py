"""The GitHub kind (OAuth2, not OIDC) through Vendo's HTTP app and Authlib's real client.

GitHub cannot be reached from tests: ``github_standin`` is a loopback **stand-in** that mimics
GitHub's ``/login/oauth/authorize`` (redirecting straight back, as after a consent),
``/login/oauth/access_token`` (checking the client secret, the code and the PKCE verifier;
errors as GitHub's 200-with-``error`` body), ``/user`` and ``/user/emails``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from vendo_auth_oidc.models import IdentityLink


@pytest.fixture
def kernel(oidc_kernel: Any, github_standin: Any) -> Any:
    return oidc_kernel(github_standin.settings())


@pytest.fixture
def client(app_client: Any, kernel: Any) -> Any:
    return app_client(kernel)


def sign_in(client: Any, standin: Any, login: str) -> Any:
    """Login at Vendo, "authorize" at the stand-in as ``login``, land on Vendo's callback."""
    standin.next_login = login
    response = client.get("/api/v1/auth/oidc/github/login", follow_redirects=False)
    assert response.status_code == 302, response.text
    authorize = response.headers["location"]
    assert authorize.startswith(f"{standin.base_url}/login/oauth/authorize?")
    import httpx

    back = httpx.get(authorize, follow_redirects=False)
    assert back.status_code == 302
    return client.get(back.headers["location"], follow_redirects=False)


def me(client: Any, response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()


def test_authorization_request_carries_pkce_and_scopes(client: Any, github_standin: Any) -> None:
    response = client.get("/api/v1/auth/oidc/github/login", follow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}
    assert query["client_id"] == "Iv1.standin" and query["scope"] == "read:user user:email"
    assert query["code_challenge_method"] == "S256" and "nonce" not in query
    assert query["redirect_uri"] == "http://testserver/api/v1/auth/oidc/github/callback"


def test_sign_up_with_the_verified_primary_email(client: Any, kernel: Any, github_standin: Any) -> None:
    github_standin.add_user("octocat", 583231, name="The Octocat", emails=[
        {"email": "octo-old@example.test", "primary": False, "verified": True, "visibility": None},
        {"email": "octocat@example.test", "primary": True, "verified": True, "visibility": "public"},
    ])
    profile = me(client, sign_in(client, github_standin, "octocat"))
    assert profile["email"] == "octocat@example.test" and profile["email_verified"] is True
    assert profile["name"] == "The Octocat" and profile["method"] == "session:oidc:github"
    with kernel.session() as session:
        [link] = session.scalars(select(IdentityLink)).all()
    assert (link.provider, link.subject, link.user_id) == ("github", "583231", profile["id"])
    assert github_standin.requests.count("GET /api/user/emails") == 1
    again = me(client, sign_in(client, github_standin, "octocat"))
    assert again["id"] == profile["id"]


def test_links_an_existing_account_by_verified_email(client: Any, kernel: Any, github_standin: Any) -> None:
    with kernel.session() as session:
        existing = kernel.identity.create_user(session, "mona@example.test", verified=True, method="password")
    github_standin.add_user("mona", 1, emails=[{"email": "mona@example.test", "primary": True, "verified": True}])
    assert me(client, sign_in(client, github_standin, "mona"))["id"] == existing.id


def test_unverified_primary_email_matching_an_account_is_409(client: Any, kernel: Any, github_standin: Any) -> None:
    with kernel.session() as session:
        kernel.identity.create_user(session, "hubot@example.test", verified=True, method="password")
    github_standin.add_user("hubot", 2, emails=[{"email": "hubot@example.test", "primary": True, "verified": False}])
    response = sign_in(client, github_standin, "hubot")
    assert response.status_code == 409 and response.json()["error"]["code"] == "email_unverified"


def test_no_email_at_all_cannot_create_an_account(client: Any, github_standin: Any) -> None:
    github_standin.add_user("ghost", 3, emails=[])
    response = sign_in(client, github_standin, "ghost")
    assert response.status_code == 400 and response.json()["error"]["code"] == "email_required"


def test_token_endpoint_error_is_502_without_secrets(client: Any, github_standin: Any) -> None:
    github_standin.add_user("octocat", 583231, emails=[])
    github_standin.token_error = "bad_verification_code"
    response = sign_in(client, github_standin, "octocat")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "provider_error" and error["details"]["error"] == "bad_verification_code"
    assert "github-standin-secret" not in response.text
