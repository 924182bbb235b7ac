"""Configuration: defaults, vendo.toml, .env, VENDO_* variables, plugin settings, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from vendo import ConfigError, PluginSettings, hookimpl
from vendo.config import load_settings

from kernel_support import provider_for


def test_defaults_need_no_configuration() -> None:
    """With nothing configured Vendo runs on SQLite in ./.vendo."""
    settings = load_settings()
    assert settings.resolved_database_url == "sqlite:///.vendo/vendo.db"
    assert settings.data_dir == Path(".vendo")
    assert settings.config_file is None
    assert settings.plugins.autoload is True and settings.plugins.strict is False


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("vendo.toml").write_text(
        'database_url = "sqlite:///from-file.db"\nlog_level = "debug"\n\n[outbox]\npoll_interval = 5\n'
    )
    monkeypatch.setenv("VENDO_OUTBOX__POLL_INTERVAL", "0.25")
    settings = load_settings()
    assert settings.config_file == Path("vendo.toml")
    assert settings.resolved_database_url == "sqlite:///from-file.db"
    assert settings.log_level == "DEBUG"
    assert settings.outbox.poll_interval == 0.25


def test_dotenv_is_read_below_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("VENDO_LOG_LEVEL=WARNING\nVENDO_SERVER__PORT=9001\n")
    monkeypatch.setenv("VENDO_SERVER__PORT", "9002")
    settings = load_settings()
    assert settings.log_level == "WARNING"
    assert settings.server.port == 9002


def test_overrides_win_over_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDO_DATABASE_URL", "sqlite:///env.db")
    settings = load_settings(overrides={"database_url": "sqlite:///override.db"})
    assert settings.resolved_database_url == "sqlite:///override.db"


def test_config_file_from_environment_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDO_CONFIG", "missing.toml")
    with pytest.raises(ConfigError, match=r"missing.toml not found \(given by VENDO_CONFIG\)"):
        load_settings()


def test_malformed_toml_names_file_and_line() -> None:
    Path("vendo.toml").write_text('database_url = "sqlite:///x.db"\nthis is not toml\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "vendo.toml: invalid TOML" in info.value.message
    assert "line 2" in info.value.message


def test_unknown_setting_suggests_the_right_name() -> None:
    Path("vendo.toml").write_text('databse_url = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match="unknown setting 'databse_url'. Did you mean 'database_url'"):
        load_settings()


def test_unknown_nested_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("vendo.toml").write_text("[outbox]\npoll_intervl = 3\n")
    with pytest.raises(ConfigError, match=r"outbox.poll_intervl: unknown setting"):
        load_settings()
    Path("vendo.toml").unlink()
    monkeypatch.setenv("VENDO_PLUGINS__STRICTT", "1")
    with pytest.raises(ConfigError, match=r"plugins.strictt: unknown setting"):
        load_settings()


def test_invalid_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDO_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"server.port: Input should be a valid integer"):
        load_settings()


def test_plugin_lists_accept_commas_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDO_PLUGINS__DISABLED", "a, b")
    monkeypatch.setenv("VENDO_PLUGINS__ENABLED", '["c"]')
    settings = load_settings()
    assert settings.plugins.disabled == ["a", "b"]
    assert settings.plugins.enabled == ["c"]


def test_postgres_urls_use_psycopg3() -> None:
    settings = load_settings(overrides={"database_url": "postgresql://u:pw@db:5432/vendo"})
    assert settings.resolved_database_url == "postgresql+psycopg://u:pw@db:5432/vendo"


def test_display_masks_database_password() -> None:
    settings = load_settings(overrides={"database_url": "postgresql://vendo:hunter2@db/vendo"})
    shown = settings.display()
    assert "hunter2" not in str(shown)
    assert shown["database_url"] == "postgresql+psycopg://vendo:***@db/vendo"


class StripeLikeSettings(PluginSettings):
    secret_key: SecretStr
    timeout: float = 10.0
    currencies: list[str] = ["eur"]


class StripeLike:
    @hookimpl
    def vendo_settings_model(self):
        return StripeLikeSettings

    seen: list = []

    @hookimpl
    def vendo_register_billing_providers(self, register, settings):
        self.seen.append(settings)
        register("stripe-like", provider_for("billing", "stripe-like"))


def test_plugin_settings_from_table_and_environment(make_kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's table in vendo.toml, overridden by VENDO_<PLUGIN>__<FIELD>, reaches its hooks."""
    Path("vendo.toml").write_text('[billing-stripe]\nsecret_key = "sk_file"\ntimeout = 3\n')
    monkeypatch.setenv("VENDO_BILLING_STRIPE__SECRET_KEY", "sk_env_secret")
    monkeypatch.setenv("VENDO_BILLING_STRIPE__CURRENCIES", '["usd", "eur"]')
    plugin = StripeLike()
    plugin.seen = []
    kernel = make_kernel({"billing-stripe": plugin}).load()
    assert kernel.plugin("billing-stripe").status == "ok"
    settings = kernel.plugin_settings("billing-stripe")
    assert settings.secret_key.get_secret_value() == "sk_env_secret"
    assert settings.timeout == 3.0
    assert settings.currencies == ["usd", "eur"]
    assert plugin.seen == [settings]
    assert "sk_env_secret" not in str(settings.model_dump(mode="json"))


def test_invalid_plugin_settings_fail_only_that_plugin(make_kernel) -> None:
    Path("vendo.toml").write_text('[billing-stripe]\ntimeout = "slow"\nsecret_kee = "x"\n')
    kernel = make_kernel({"billing-stripe": StripeLike()}).load()
    info = kernel.plugin("billing-stripe")
    assert info.status == "failed"
    assert "invalid settings for plugin 'billing-stripe'" in info.error
    assert "timeout: Input should be a valid number" in info.error
    assert "secret_kee: unknown setting" in info.error
    assert "secret_key: Field required" in info.error
    assert kernel.providers.registered("billing") == []
    assert kernel.plugin("core").status == "ok"


def test_unknown_plugin_table_and_environment_name_are_warned(make_kernel, monkeypatch) -> None:
    Path("vendo.toml").write_text("[not-installed]\nx = 1\n")
    monkeypatch.setenv("VENDO_NOT_A_SETTING", "1")
    monkeypatch.setenv("VENDO_TEST_ANYTHING", "ignored: test tooling")
    kernel = make_kernel().load()
    assert "vendo.toml has settings for plugin 'not-installed', which is not installed" in kernel.warnings
    assert "environment variable VENDO_NOT_A_SETTING is not a Vendo setting" in kernel.warnings
    assert not any("VENDO_TEST_ANYTHING" in w for w in kernel.warnings)
