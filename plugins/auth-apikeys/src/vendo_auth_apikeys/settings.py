"""Settings of the plugin: the ``[auth-apikeys]`` table of ``vendo.toml``, or
``VENDO_AUTH_APIKEYS__<FIELD>`` environment variables."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from vendo import PluginSettings

Environment = Literal["live", "test"]

#: A scope name: letters, digits and ``_ . : - /``, starting with a letter or digit.
SCOPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}")
#: A rate-limit tier name.
TIER_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
#: The scope a credential needs to manage API keys (signed-in users hold every scope).
MANAGE_SCOPE = "api_keys:manage"
#: The scope granting everything; not grantable to keys unless ``allow_wildcard_scope``.
WILDCARD = "*"


class ApiKeySettings(PluginSettings):
    """``[auth-apikeys]`` settings. Every field has a safe default; nothing is required."""

    environment: Environment = Field(
        "live", description="Environment of new keys when the request names none (vk_live_... or vk_test_...).")
    accepted_environments: list[Environment] = Field(
        default_factory=lambda: ["live", "test"],
        description="Environments whose keys this deployment accepts (e.g. [\"test\"] on staging); "
                    "keys of other environments are refused like unknown keys and cannot be created.")
    allow_wildcard_scope: bool = Field(
        False, description="Whether a key may be granted the '*' scope (every scope).")
    grantable_scopes: list[str] | None = Field(
        None, description="If set, the only scopes a key may be granted; otherwise any well-formed scope name.")
    max_scopes: int = Field(50, ge=1, le=500, description="Most scopes one key may hold.")
    rate_limit_tiers: list[str] = Field(
        default_factory=lambda: ["standard"],
        description="Tier names a key may carry (Principal.attributes['rate_limit_tier']).")
    default_rate_limit_tier: str = Field("standard", description="Tier of keys created without one.")
    operator_rate_limit_tiers: list[str] = Field(
        default_factory=list,
        description="Tiers only the operator assigns (vendo api-keys set-tier), e.g. a generous partner tier: "
                    "workspace admins cannot pick them.")
    default_grace_seconds: int = Field(
        86_400, ge=0, description="How long a rotated key keeps working when the rotation names no grace_seconds.")
    max_grace_seconds: int = Field(7 * 86_400, ge=0, description="Longest grace_seconds a rotation may ask for.")
    last_used_resolution_seconds: int = Field(
        60, ge=1, le=86_400, description="last_used_at is written at most once per key in this many seconds.")
    max_keys_per_workspace: int = Field(
        100, ge=1, le=100_000, description="Most usable (not revoked, expired or retired) keys per workspace.")

    @field_validator("accepted_environments")
    @classmethod
    def _some_environment(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("accept at least one environment (live, test)")
        return list(dict.fromkeys(value))

    @field_validator("grantable_scopes")
    @classmethod
    def _scope_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [s for s in value if s != WILDCARD and not SCOPE_PATTERN.fullmatch(s)]
        if bad:
            raise ValueError(f"invalid scope name(s) {bad}: use letters, digits and _ . : - /")
        return list(dict.fromkeys(value))

    @field_validator("rate_limit_tiers", "operator_rate_limit_tiers")
    @classmethod
    def _tier_names(cls, value: list[str], info: Any) -> list[str]:
        if not value and info.field_name == "rate_limit_tiers":
            raise ValueError("list at least one rate-limit tier")
        bad = [t for t in value if not TIER_PATTERN.fullmatch(t)]
        if bad:
            raise ValueError(f"invalid tier name(s) {bad}: lower-case letters, digits, _ . -, 1 to 40 characters")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> ApiKeySettings:
        if self.environment not in self.accepted_environments:
            raise ValueError(f"environment {self.environment!r} is not in accepted_environments")
        if self.default_rate_limit_tier not in self.rate_limit_tiers:
            raise ValueError(f"default_rate_limit_tier {self.default_rate_limit_tier!r} is not in rate_limit_tiers")
        both = sorted(set(self.rate_limit_tiers) & set(self.operator_rate_limit_tiers))
        if both:
            raise ValueError(f"tier(s) {both} are in rate_limit_tiers and operator_rate_limit_tiers: pick one")
        if self.default_grace_seconds > self.max_grace_seconds:
            raise ValueError("default_grace_seconds exceeds max_grace_seconds")
        if self.grantable_scopes is not None and WILDCARD in self.grantable_scopes and not self.allow_wildcard_scope:
            raise ValueError("grantable_scopes lists '*' but allow_wildcard_scope is false")
        return self
