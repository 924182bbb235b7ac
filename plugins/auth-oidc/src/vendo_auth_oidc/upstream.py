"""Talking to identity providers: discovery, the authorization URL, the code exchange and
the user's identity (ID token and userinfo for OIDC; ``/user`` and ``/user/emails`` for GitHub).

OAuth2 requests go through Authlib's httpx client (``authlib.integrations.httpx_client``):
PKCE (S256), client authentication and token parsing are Authlib's. Discovery documents and
JWKS are cached per provider for ``metadata_ttl`` seconds; an ID token signed with a key the
cached JWKS lacks refreshes it once (key rotation).

Every failure is raised as a Vendo error (``provider_error`` or ``invalid_id_token``, 502)
whose message names the provider and the reason: never a secret, a token or a code.
"""

from __future__ import annotations

import threading
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from vendo_auth_oidc import errors
from vendo_auth_oidc.idtoken import IdTokenError, UnknownSigningKey, validate_id_token

if TYPE_CHECKING:  # pragma: no cover
    from vendo_auth_oidc.settings import ProviderConfig, Settings

#: The longest subject kept (OpenID Connect Core 1.0 §2: at most 255 ASCII characters).
MAX_SUBJECT = 255
GITHUB_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
_CLIENT_CLASS: Any = None


def oauth2_client_class() -> Any:
    """Authlib's synchronous httpx OAuth2 client class (imported once, on first use).

    Authlib 1.9 deprecates its plain-``httpx`` transport in favour of the ``httpx2``
    package; Vendo and its test client run on ``httpx``, which Authlib still supports, so
    that one import-time notice is silenced here rather than shown on every start.
    """
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        from authlib.deprecate import AuthlibDeprecationWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            from authlib.integrations.httpx_client import OAuth2Client
        _CLIENT_CLASS = OAuth2Client
    return _CLIENT_CLASS


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the provider says signed in."""

    subject: str
    email: str | None
    email_verified: bool
    name: str = ""


@dataclass(frozen=True)
class Endpoints:
    """A provider's endpoints, from discovery (OIDC) or configuration (GitHub)."""

    authorization: str
    token: str
    issuer: str | None = None
    userinfo: str | None = None
    jwks_uri: str | None = None
    auth_methods: tuple[str, ...] = ()
    id_token_algorithms: tuple[str, ...] | None = None


def is_verified(value: Any) -> bool:
    """``email_verified`` as providers send it: ``true`` (some send the string ``"true"``)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _clean_email(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class Upstream(ABC):
    """One configured provider. Subclasses: :class:`OidcUpstream`, :class:`GitHubUpstream`."""

    def __init__(self, name: str, config: ProviderConfig, settings: Settings) -> None:
        self.name = name
        self.config = config
        self.settings = settings

    # -- to override -----------------------------------------------------------------

    @abstractmethod
    def endpoints(self) -> Endpoints:
        """The provider's endpoints.

        :raises VendoError: ``provider_error`` when they cannot be found.
        """

    @abstractmethod
    def _identity(self, client: Any, token: dict[str, Any], nonce: str, now: int) -> ExternalIdentity:
        """Who signed in, given the token response (``client`` holds the access token)."""

    @abstractmethod
    def _default_auth_method(self, endpoints: Endpoints) -> str:
        """The token endpoint's client authentication when the settings name none."""

    def _authorize_params(self, nonce: str) -> dict[str, str]:
        """Parameters of the authorization request beyond OAuth2's and PKCE's."""
        return dict(self.config.extra_params)

    # -- the flow ----------------------------------------------------------------------

    def _client(self, endpoints: Endpoints, redirect_uri: str) -> Any:
        config = self.config
        secret = config.client_secret.get_secret_value() if config.client_secret is not None else None
        method = config.token_endpoint_auth_method or self._default_auth_method(endpoints)
        return oauth2_client_class()(
            client_id=config.client_id, client_secret=secret, token_endpoint_auth_method=method,
            scope=" ".join(config.scopes or []), redirect_uri=redirect_uri, code_challenge_method="S256",
            timeout=self.settings.http_timeout, follow_redirects=False,
        )

    def authorization_url(self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        """Where to send the browser: the authorization endpoint with ``state``, ``nonce``
        (OIDC) and the PKCE S256 challenge of ``code_verifier``."""
        endpoints = self.endpoints()
        with self._client(endpoints, redirect_uri) as client:
            url, _state = client.create_authorization_url(endpoints.authorization, state=state,
                                                          code_verifier=code_verifier,
                                                          **self._authorize_params(nonce))
        return url

    def sign_in(self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str, now: int) -> ExternalIdentity:
        """Exchange the authorization code (with the PKCE verifier) and read who signed in.

        :raises VendoError: ``provider_error`` (exchange or profile failed) or
            ``invalid_id_token``.
        """
        from authlib.common.errors import AuthlibBaseError

        endpoints = self.endpoints()
        with self._client(endpoints, redirect_uri) as client:
            try:
                token = client.fetch_token(endpoints.token, grant_type="authorization_code", code=code,
                                           code_verifier=code_verifier, redirect_uri=redirect_uri)
            except AuthlibBaseError as exc:
                reason = str(exc.error)[:100]
                raise errors.provider_error(self.name, f"the token exchange was refused ({reason})",
                                            error=reason) from None
            except httpx.HTTPStatusError as exc:
                raise errors.provider_error(
                    self.name, f"the token endpoint answered HTTP {exc.response.status_code}") from None
            except (httpx.HTTPError, ValueError) as exc:
                raise errors.provider_error(self.name, f"the token endpoint cannot be used ({type(exc).__name__})") \
                    from None
            if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
                raise errors.provider_error(self.name, "the token endpoint returned no access token")
            who = self._identity(client, dict(token), nonce, now)
        if not who.subject or len(who.subject) > MAX_SUBJECT:
            raise errors.provider_error(self.name, f"the subject must be 1 to {MAX_SUBJECT} characters")
        return who

    # -- helpers ----------------------------------------------------------------------------

    def _get_json(self, client: httpx.Client, url: str, what: str, **kwargs: Any) -> Any:
        """GET ``url`` and return its JSON body.

        :raises VendoError: ``provider_error`` naming ``what`` on any failure.
        """
        from authlib.common.errors import AuthlibBaseError

        try:
            response = client.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.provider_error(self.name, f"{what} cannot be reached ({type(exc).__name__})") from None
        except AuthlibBaseError as exc:  # the client's token is missing, expired or of an unknown type
            raise errors.provider_error(self.name, f"{what} cannot be called ({str(exc.error)[:100]})") from None
        if response.status_code != 200:
            raise errors.provider_error(self.name, f"{what} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise errors.provider_error(self.name, f"{what} did not answer JSON") from None


class _Cached:
    """A value fetched at most every ``ttl`` seconds, shared by threads."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.value: Any = None
        self.fetched_at = 0.0
        self.lock = threading.Lock()

    def get(self, fetch: Any, *, force: bool = False) -> Any:
        with self.lock:
            if force or self.value is None or time.monotonic() - self.fetched_at >= self.ttl:
                self.value = fetch()
                self.fetched_at = time.monotonic()
            return self.value


class OidcUpstream(Upstream):
    """An OpenID Connect provider found by discovery (Keycloak, Google, Microsoft, Okta...)."""

    def __init__(self, name: str, config: ProviderConfig, settings: Settings) -> None:
        super().__init__(name, config, settings)
        self._metadata = _Cached(settings.metadata_ttl)
        self._jwks = _Cached(settings.metadata_ttl)

    def _discover(self) -> Endpoints:
        url = self.config.discovery_document_url
        with httpx.Client(timeout=self.settings.http_timeout, follow_redirects=False) as client:
            document = self._get_json(client, url, "the discovery document")
        if not isinstance(document, dict):
            raise errors.provider_error(self.name, "the discovery document is not a JSON object")
        issuer = document.get("issuer")
        required = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        missing = [key for key in ("issuer", *required) if not isinstance(document.get(key), str)]
        if missing:
            raise errors.provider_error(self.name, f"the discovery document lacks {', '.join(missing)}")
        expected = self.config.issuer
        if expected and "{tenantid}" not in issuer and issuer.rstrip("/") != expected.rstrip("/"):
            raise errors.provider_error(self.name, f"the discovery document names issuer {issuer[:200]!r}, "
                                                   f"not the configured {expected!r}")
        algorithms = document.get("id_token_signing_alg_values_supported")
        methods = document.get("token_endpoint_auth_methods_supported")
        return Endpoints(
            authorization=document["authorization_endpoint"], token=document["token_endpoint"], issuer=issuer,
            userinfo=document.get("userinfo_endpoint") if isinstance(document.get("userinfo_endpoint"), str) else None,
            jwks_uri=document["jwks_uri"],
            auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else (),
            id_token_algorithms=tuple(a for a in algorithms if isinstance(a, str))
            if isinstance(algorithms, list) else None,
        )

    def endpoints(self) -> Endpoints:
        """From the discovery document (cached)."""
        return self._metadata.get(self._discover)

    def _default_auth_method(self, endpoints: Endpoints) -> str:
        if self.config.client_secret is None:
            return "none"
        # Discovery's default, when the list is absent, is client_secret_basic (OIDC Discovery 1.0, §3).
        supported = endpoints.auth_methods or ("client_secret_basic",)
        return "client_secret_basic" if "client_secret_basic" in supported else "client_secret_post"

    def _authorize_params(self, nonce: str) -> dict[str, str]:
        return {**self.config.extra_params, "nonce": nonce}

    def _fetch_jwks(self) -> dict[str, Any]:
        endpoints = self.endpoints()
        with httpx.Client(timeout=self.settings.http_timeout, follow_redirects=False) as client:
            jwks = self._get_json(client, endpoints.jwks_uri, "the JWKS endpoint")
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise errors.provider_error(self.name, "the JWKS endpoint did not answer a key set")
        return jwks

    def verify_id_token(self, id_token: Any, *, nonce: str, now: int, access_token: str | None) -> dict[str, Any]:
        """Validate an ID token against the provider's keys (refreshed once on an unknown ``kid``).

        :raises VendoError: ``invalid_id_token``.
        """
        if not isinstance(id_token, str):
            raise errors.invalid_id_token(self.name, "the token endpoint returned no ID token")
        endpoints = self.endpoints()
        arguments = dict(issuer=endpoints.issuer, client_id=self.config.client_id, nonce=nonce, now=now,
                         leeway=self.settings.clock_skew, algorithms=endpoints.id_token_algorithms,
                         access_token=access_token)
        try:
            try:
                return validate_id_token(id_token, jwks=self._jwks.get(self._fetch_jwks), **arguments)
            except UnknownSigningKey:
                return validate_id_token(id_token, jwks=self._jwks.get(self._fetch_jwks, force=True), **arguments)
        except IdTokenError as exc:
            raise errors.invalid_id_token(self.name, str(exc)) from None

    def _identity(self, client: Any, token: dict[str, Any], nonce: str, now: int) -> ExternalIdentity:
        claims = self.verify_id_token(token.get("id_token"), nonce=nonce, now=now,
                                      access_token=token.get("access_token"))
        endpoints = self.endpoints()
        email, verified, name = claims.get("email"), claims.get("email_verified"), claims.get("name")
        if email is None and endpoints.userinfo:
            # Many providers (oidc-provider by default, Keycloak when configured) put profile
            # claims only in the userinfo response of a code flow.
            info = self._get_json(client, endpoints.userinfo, "the userinfo endpoint")
            if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
                raise errors.provider_error(self.name, "the userinfo response is not about the ID token's subject")
            email, verified = info.get("email"), info.get("email_verified")
            name = name or info.get("name") or info.get("preferred_username")
        name = name or claims.get("preferred_username") or ""
        email = _clean_email(email)
        return ExternalIdentity(subject=claims["sub"], email=email,
                                email_verified=bool(email) and is_verified(verified), name=str(name)[:200])


class GitHubUpstream(Upstream):
    """GitHub's OAuth2 (not OpenID Connect): the user is ``GET /user`` and the verified primary
    address comes from ``GET /user/emails``."""

    def endpoints(self) -> Endpoints:
        """``<base_url>/login/oauth/authorize`` and ``<base_url>/login/oauth/access_token``."""
        base = self.config.base_url
        return Endpoints(authorization=f"{base}/login/oauth/authorize", token=f"{base}/login/oauth/access_token")

    def _default_auth_method(self, endpoints: Endpoints) -> str:
        return "client_secret_post" if self.config.client_secret is not None else "none"

    def _identity(self, client: Any, token: dict[str, Any], nonce: str, now: int) -> ExternalIdentity:
        api = self.config.api_base_url
        user = self._get_json(client, f"{api}/user", "GitHub's /user", headers=GITHUB_API_HEADERS)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise errors.provider_error(self.name, "GitHub's /user answered no user id")
        emails = self._get_json(client, f"{api}/user/emails", "GitHub's /user/emails", headers=GITHUB_API_HEADERS)
        if not isinstance(emails, list):
            raise errors.provider_error(self.name, "GitHub's /user/emails did not answer a list")
        entries = [e for e in emails if isinstance(e, dict) and _clean_email(e.get("email"))]
        primary = next((e for e in entries if e.get("primary") is True), None)
        chosen = primary or next((e for e in entries if e.get("verified") is True), None)
        if chosen is not None:
            email, verified = _clean_email(chosen["email"]), chosen.get("verified") is True
        else:
            email, verified = _clean_email(user.get("email")), False  # the public profile address: unverified
        name = user.get("name") or user.get("login") or ""
        return ExternalIdentity(subject=str(user["id"]), email=email, email_verified=bool(email) and verified,
                                name=str(name)[:200])


def make_upstream(name: str, config: ProviderConfig, settings: Settings) -> Upstream:
    """The client of one configured provider."""
    kinds = {"oidc": OidcUpstream, "github": GitHubUpstream}
    return kinds[config.kind](name, config, settings)
