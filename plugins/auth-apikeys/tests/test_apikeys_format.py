"""The key format and the settings model: pure functions, no database."""

from __future__ import annotations

import pytest

from vendo_auth_apikeys.authenticator import credential_of
from vendo_auth_apikeys.keys import (
    KEY_LENGTH,
    display_prefix,
    format_key,
    is_key_id,
    new_key_id,
    new_secret,
    parse_key,
)
from vendo_auth_apikeys.settings import ApiKeySettings


def test_new_keys_have_the_documented_shape() -> None:
    key = format_key("live", new_key_id(), new_secret())
    assert key.startswith("vk_live_") and len(key) == KEY_LENGTH == 52
    parsed = parse_key(key)
    assert parsed is not None and parsed.environment == "live"
    assert len(parsed.key_id) == 12 and parsed.key_id.isalnum() and parsed.key_id == parsed.key_id.lower()
    assert len(parsed.secret) == 32 and parsed.secret.isalnum()
    assert key == f"vk_live_{parsed.key_id}{parsed.secret}"
    assert display_prefix("live", parsed.key_id) == key[:20] + "\u2026"


def test_ids_and_secrets_are_random() -> None:
    assert len({new_key_id() for _ in range(500)}) == 500
    assert len({new_secret() for _ in range(500)}) == 500


@pytest.mark.parametrize("value", [
    "", "vk_", "vk_live_", "vk_live_short", "vk_prod_abcdefghijkl" + "A" * 32, "vk_live_ABCDEFGHIJKL" + "A" * 32,
    "vk_live_abcdefghijkl" + "A" * 31 + "!", "vk_live_abcdefghijkl" + "A" * 33, " vk_live_abcdefghijkl" + "A" * 31,
    "vk_live-abcdefghijkl" + "A" * 32, "vk_live_abcdefghijkl" + "A" * 10_000, "vk_live_abcdefghijk\u00e9" + "A" * 32,
])
def test_anything_else_is_malformed_without_raising(value: str) -> None:
    assert parse_key(value) is None


def test_format_refuses_parts_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        format_key("prod", new_key_id(), new_secret())
    with pytest.raises(ValueError):
        format_key("live", "short", new_secret())


def test_key_ids() -> None:
    assert is_key_id(new_key_id())
    assert not is_key_id("ABCDEFGHIJKL") and not is_key_id("abc") and not is_key_id("unknown-id")


class _Headers(dict):
    def get(self, name, default=None):  # Starlette headers are case-insensitive; tests use lower case
        return super().get(name.lower(), default)


def test_credentials_are_read_from_bearer_or_x_api_key() -> None:
    key = format_key("test", new_key_id(), new_secret())
    assert credential_of(_Headers({"authorization": f"Bearer {key}"})) == key
    assert credential_of(_Headers({"authorization": f"bearer   {key}"})) == key
    assert credential_of(_Headers({"x-api-key": key})) == key
    assert credential_of(_Headers({"authorization": f"Bearer {key}", "x-api-key": key})) == key
    assert credential_of(_Headers({})) is None
    assert credential_of(_Headers({"authorization": "Bearer eyJhbGciOi.x.y"})) is None
    assert credential_of(_Headers({"authorization": f"Basic {key}"})) is None
    assert credential_of(_Headers({"x-api-key": "sk_other_vendor"})) is None
    assert credential_of(_Headers({"authorization": "Bearer vk_garbage"})) == "vk_garbage"  # ours, malformed


def test_two_different_keys_are_refused() -> None:
    from vendo import Unauthorized

    one, two = (format_key("live", new_key_id(), new_secret()) for _ in range(2))
    with pytest.raises(Unauthorized) as refused:
        credential_of(_Headers({"authorization": f"Bearer {one}", "x-api-key": two}))
    assert refused.value.code == "invalid_api_key" and refused.value.message == "invalid API key"


def test_settings_defaults_are_safe() -> None:
    settings = ApiKeySettings()
    assert settings.environment == "live" and settings.accepted_environments == ["live", "test"]
    assert settings.allow_wildcard_scope is False and settings.grantable_scopes is None
    assert settings.default_rate_limit_tier in settings.rate_limit_tiers
    assert settings.last_used_resolution_seconds == 60


@pytest.mark.parametrize(("values", "message"), [
    ({"environment": "live", "accepted_environments": ["test"]}, "not in accepted_environments"),
    ({"accepted_environments": []}, "at least one environment"),
    ({"default_rate_limit_tier": "gold"}, "not in rate_limit_tiers"),
    ({"rate_limit_tiers": ["Gold Tier"]}, "invalid tier"),
    ({"default_grace_seconds": 100, "max_grace_seconds": 10}, "exceeds max_grace_seconds"),
    ({"grantable_scopes": ["*"]}, "allow_wildcard_scope"),
    ({"grantable_scopes": ["bad scope"]}, "invalid scope"),
    ({"last_used_resolution_seconds": 0}, "greater than or equal to 1"),
    ({"unknown_setting": 1}, "extra"),
])
def test_settings_refuse_inconsistent_values(values: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        ApiKeySettings(**values)


def test_invalid_settings_fail_the_plugin_with_the_field_named(tmp_path) -> None:
    import vendo_auth_apikeys
    from vendo import Kernel, StartupError, load_settings

    settings = load_settings(overrides={"data_dir": str(tmp_path), "plugins": {"autoload": False}},
                             plugin_settings={"auth-apikeys": {"max_grace_seconds": -1}})
    kernel = Kernel(settings, plugins={"auth-apikeys": vendo_auth_apikeys}).load()
    info = kernel.plugin("auth-apikeys")
    assert info.status == "failed" and "max_grace_seconds" in info.error
    strict = load_settings(overrides={"data_dir": str(tmp_path), "plugins": {"autoload": False, "strict": True}},
                           plugin_settings={"auth-apikeys": {"environment": "staging"}})
    with pytest.raises(StartupError, match="environment: Input should be 'live' or 'test'"):
        Kernel(strict, plugins={"auth-apikeys": vendo_auth_apikeys}).load()
