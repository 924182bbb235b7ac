"""Settings of ``vendo-auth-oidc``: the ``[auth-oidc]`` table of ``vendo.toml``.

::

    [auth-oidc]
    redirect_base_url = "https://vendo.example.com"
    allowed_redirect_origins = ["https://app.example.com"]

    [auth-oidc.providers.google]
    issuer = "https://accounts.google.com"
    client_id = "1234.apps.googleusercontent.com"
    client_secret = "..."            # or VENDO_AUTH_OIDC__PROVIDERS__GOOGLE__CLIENT_SECRET

    [auth-oidc.providers.github]
    kind = "github"
    client_id = "Iv1.abc"
    client_secret = "..."
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from vendo import PluginSettings

#: Provider names appear in URLs and in session methods (``oidc:<name>``, at most 40 characters).
PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

#: Authorization request parameters the plugin sets itself; ``extra_params`` may not override them.
RESERVED_PARAMS = frozenset({
    "client_id", "response_type", "redirect_uri", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method",
})

DEFAULT_SCOPES = {"oidc": ["openid", "email", "profile"], "github": ["read:user", "user:email"]}


def _http_url(value: str, field: str) -> str:
    """``value`` if it is an absolute http(s) URL without query or fragment, trailing ``/`` removed."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{field} must be an absolute http(s) URL without query or fragment, got {value!r}")
    return value.strip().rstrip("/")


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` lower-cased, default ports dropped.

    :raises ValueError: not an http(s) origin (a path, query, fragment or credentials given).
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"not an http(s) origin: {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"an origin has no path, query or fragment: {value!r} (write e.g. https://app.example.com)")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


class ProviderConfig(BaseModel):
    """One identity provider.

    ``kind = "oidc"`` (default) is any OpenID Connect provider found by discovery: set
    ``issuer`` (``<issuer>/.well-known/openid-configuration`` is read) or ``discovery_url``.
    ``kind = "github"`` is GitHub's OAuth2 (not OIDC): ``base_url`` and ``api_base_url`` point
    at github.com and api.github.com unless you use GitHub Enterprise (or a test stand-in).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["oidc", "github"] = "oidc"
    display_name: str | None = Field(None, max_length=100, description="Label for sign-in buttons.")
    issuer: str | None = None
    discovery_url: str | None = None
    client_id: str = Field(..., min_length=1, max_length=512)
    client_secret: SecretStr | None = None
    scopes: list[str] | None = None
    extra_params: dict[str, str] = Field(default_factory=dict,
                                         description="Extra authorization request parameters (prompt, hd...).")
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] | None = None
    base_url: str = "https://github.com"
    api_base_url: str = "https://api.github.com"

    @field_validator("issuer", "discovery_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _http_url(value, info.field_name)

    @field_validator("base_url", "api_base_url")
    @classmethod
    def _base(cls, value: str, info: ValidationInfo) -> str:
        return _http_url(value, info.field_name)

    @field_validator("extra_params")
    @classmethod
    def _extra(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(RESERVED_PARAMS & set(value))
        if reserved:
            raise ValueError(f"extra_params may not set {', '.join(reserved)}: the plugin sets them")
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> ProviderConfig:
        if self.kind == "oidc":
            if not self.issuer and not self.discovery_url:
                raise ValueError('an "oidc" provider needs issuer (or discovery_url)')
        elif self.issuer or self.discovery_url:
            raise ValueError('a "github" provider takes no issuer or discovery_url (GitHub is OAuth2, not OIDC)')
        if self.scopes is None:
            self.scopes = list(DEFAULT_SCOPES[self.kind])
        elif self.kind == "oidc" and "openid" not in self.scopes:
            raise ValueError('scopes of an "oidc" provider must include "openid"')
        if self.token_endpoint_auth_method in ("client_secret_basic", "client_secret_post") \
                and self.client_secret is None:
            raise ValueError(f"token_endpoint_auth_method {self.token_endpoint_auth_method} needs a client_secret")
        return self

    @property
    def discovery_document_url(self) -> str:
        """Where the OpenID configuration is read (oidc providers)."""
        if self.discovery_url:
            return self.discovery_url
        return f"{self.issuer}/.well-known/openid-configuration"


class Settings(PluginSettings):
    """``[auth-oidc]``: the providers and where the browser comes back to."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    redirect_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Vendo's public base URL; callbacks are <redirect_base_url>/api/v1/auth/oidc/<provider>/callback.",
    )
    allowed_redirect_origins: list[str] = Field(
        default_factory=list, description="Origins that ?next= may send the browser (with tokens) back to.",
    )
    state_ttl: int = Field(600, ge=60, le=3600, description="Seconds a started sign-in stays valid.")
    http_timeout: float = Field(10.0, gt=0, le=60, description="Seconds for each call to a provider.")
    clock_skew: int = Field(60, ge=0, le=600, description="Leeway in seconds for ID token times.")
    metadata_ttl: int = Field(3600, ge=0, description="Seconds discovery documents and JWKS are cached.")
    bind_to_browser: bool = Field(
        True, description="Tie each sign-in to the browser that started it (a cookie), against login CSRF.",
    )

    @field_validator("providers")
    @classmethod
    def _names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if not PROVIDER_NAME.match(name):
                raise ValueError(f"provider name {name!r}: use 1-32 lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("redirect_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return _http_url(value, "redirect_base_url")

    @field_validator("allowed_redirect_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [normalize_origin(origin) for origin in value]
