"""Configuration: ``VENDO_*`` environment variables, ``.env`` and ``vendo.toml``.

Precedence, highest first: explicit overrides (tests, embedding code), environment
variables, ``.env``, ``vendo.toml``, defaults. With no configuration at all Vendo runs
on SQLite in ``./.vendo``.

``vendo.toml`` layout::

    database_url = "postgresql+psycopg://postgres@127.0.0.1:5432/vendo"

    [plugins]            # which plugins load
    disabled = ["tool-http"]

    [providers]          # active provider per capability family
    billing = "stripe"

    [billing-stripe]     # a plugin's own settings, in a table named after the plugin
    secret_key = "sk_test_..."

Environment names: ``VENDO_DATABASE_URL``, ``VENDO_PLUGINS__DISABLED=a,b``,
``VENDO_BILLING_STRIPE__SECRET_KEY`` (plugin name upper-cased, ``-`` as ``_``).
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from vendo.errors import ConfigError

ENV_PREFIX = "VENDO_"
CONFIG_ENV = "VENDO_CONFIG"
DEFAULT_CONFIG_FILE = "vendo.toml"
#: Environment names with the prefix that are not settings (tooling, tests).
_NOT_SETTINGS = {"VENDO_CONFIG"}
_NOT_SETTINGS_PREFIXES = ("VENDO_TEST_",)


def _split_names(value: Any) -> Any:
    """Accept a list, a JSON list or a comma-separated string of names."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc.msg}") from exc
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class PluginControls(BaseModel):
    """Which plugins load, and how strictly (``[plugins]`` / ``VENDO_PLUGINS__*``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: Annotated[list[str] | None, NoDecode] = Field(
        None, description="Allow-list of plugin names; when set, no other plugin loads."
    )
    disabled: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Block-list of plugin names.")
    autoload: bool = Field(True, description="Discover plugins through entry points.")
    strict: bool = Field(False, description="Stop start-up when any enabled plugin fails.")
    trace: bool = Field(False, description="Log every hook call with its plugin and duration.")

    @field_validator("enabled", "disabled", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_names(value)


class OutboxSettings(BaseModel):
    """Delivery of domain events to subscribers (``[outbox]`` / ``VENDO_OUTBOX__*``)."""

    model_config = ConfigDict(extra="forbid")

    dispatch_in_server: bool = Field(True, description="Run the dispatcher inside `vendo serve`.")
    poll_interval: float = Field(1.0, gt=0, description="Seconds between polls when idle.")
    batch_size: int = Field(100, ge=1, le=10_000)
    max_attempts: int = Field(12, ge=1, description="Attempts before a delivery is dead.")
    backoff_base: float = Field(2.0, gt=0, description="Seconds before the first retry; doubles each time.")
    backoff_max: float = Field(3600.0, gt=0, description="Longest wait between retries, in seconds.")
    lease_seconds: float = Field(60.0, gt=0, description="How long a claimed delivery stays locked.")


class SessionSettings(BaseModel):
    """Sign-in sessions (``[sessions]`` / ``VENDO_SESSIONS__*``)."""

    model_config = ConfigDict(extra="forbid")

    access_ttl: int = Field(900, ge=30, le=86_400, description="Access token lifetime, seconds.")
    refresh_ttl: int = Field(30 * 86_400, ge=300, description="Refresh token lifetime, seconds.")
    invitation_ttl: int = Field(7 * 86_400, ge=300, description="Invitation lifetime, seconds.")


class BillingSettings(BaseModel):
    """``[billing]``: the kernel's subscription state machine."""

    model_config = ConfigDict(extra="forbid")

    grace_days: int = Field(
        7, ge=0, le=90, description="Days entitlements stay on after a failed payment before they are restricted."
    )
    usage_report_interval: float = Field(
        60.0, ge=0, description="Seconds between two pushes of metered usage to the billing provider for "
                                "usage-based prices while `vendo serve` runs (0: never; `vendo billing "
                                "report-usage` pushes on demand)."
    )


def check_link_template(value: str, *placeholders: str) -> str:
    """Validate a link template such as ``{public_url}/reset-password?token={token}``: it
    formats with exactly the given placeholders (and ``public_url``) into an http(s) URL.

    :raises ValueError: unknown placeholder, missing ``{token}``, or not an http(s) URL.
    """
    import string

    names = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    allowed = {"public_url", *placeholders}
    if names - allowed:
        raise ValueError(f"unknown placeholder(s) {sorted(names - allowed)}; use {sorted(allowed)}")
    missing = set(placeholders) - names
    if missing:
        raise ValueError(f"the link must contain {', '.join('{' + m + '}' for m in sorted(missing))}")
    sample = value.format(public_url="https://example.com", **{name: "x" for name in placeholders})
    if not sample.startswith(("https://", "http://")):
        raise ValueError("the link must start with {public_url} or http(s)://")
    return value


class NotificationSettings(BaseModel):
    """Links in the emails the kernel requests (``[notifications]`` / ``VENDO_NOTIFICATIONS__*``).

    ``{public_url}`` is the ``public_url`` setting; ``{token}`` the single-use token.
    """

    model_config = ConfigDict(extra="forbid")

    invitation_url: str = Field(
        "{public_url}/invitations/accept?token={token}",
        description="Where an invitation email sends its recipient (a page of your app that posts the token "
                    "to POST /api/v1/invitations/accept).")

    @field_validator("invitation_url")
    @classmethod
    def _link(cls, value: str) -> str:
        return check_link_template(value, "token")


class EntitlementSettings(BaseModel):
    """Plans and entitlements (``[entitlements]`` / ``VENDO_ENTITLEMENTS__*``)."""

    model_config = ConfigDict(extra="forbid")

    plan_cache_ttl: float = Field(
        1.0, ge=0, le=3600,
        description="Seconds a worker keeps a subject's plan assignment in memory: a plan change made by "
                    "another worker process applies within this time (at once in the process that made it); "
                    "0 reads it on every decision.",
    )
    group_commit: int = Field(
        64, ge=0, le=1000,
        description="Concurrent consume/track calls of one process share one transaction, at most this many "
                    "(each caller still returns only after the commit holding its write); 0 or 1 gives every "
                    "call a transaction of its own.",
    )


class ServerSettings(BaseModel):
    """``vendo serve`` defaults (``[server]`` / ``VENDO_SERVER__*``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)


_toml_data: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("vendo_toml_data", default={})


class _TomlSource(PydanticBaseSettingsSource):
    """The kernel part of ``vendo.toml``, below environment variables in precedence."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _toml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get())


class Settings(BaseSettings):
    """The kernel's settings. Build them with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        nested_model_default_partial_update=True,
    )

    data_dir: Path = Field(Path(".vendo"), description="Where embedded data (the SQLite database) lives.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/vendo.db. postgresql:// uses psycopg 3."
    )
    secret_key: SecretStr | None = Field(
        None, description="Master secret (32+ characters); default: generated in <data_dir>/secret.key."
    )
    public_url: str | None = Field(
        None, description="The site's public address, for links in emails (https://app.example.com); "
                          "default http://<server.host>:<server.port>.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    plugins: PluginControls = Field(default_factory=PluginControls)
    providers: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Active provider(s) per capability family."
    )
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    entitlements: EntitlementSettings = Field(default_factory=EntitlementSettings)

    _config_file: Path | None = PrivateAttr(None)
    _plugin_tables: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or any(c in value for c in " ?#"):
            raise ValueError("public_url must be an http(s) URL without query or fragment, e.g. https://app.example.com")
        return value

    @property
    def base_url(self) -> str:
        """``public_url``, or the address ``vendo serve`` listens on."""
        return self.public_url or f"http://{self.server.host}:{self.server.port}"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _TomlSource(settings_cls), file_secret_settings)

    @property
    def config_file(self) -> Path | None:
        """The ``vendo.toml`` these settings were read from, if any."""
        return self._config_file

    @property
    def resolved_database_url(self) -> str:
        """The database URL to connect to, with defaults and driver names filled in."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'vendo.db'}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain):]
        return url

    def plugin_table(self, plugin_name: str) -> dict[str, Any]:
        """The ``[<plugin_name>]`` table of ``vendo.toml`` (empty if absent)."""
        return dict(self._plugin_tables.get(plugin_name, {}))

    @property
    def plugin_table_names(self) -> list[str]:
        """Names of the plugin tables found in ``vendo.toml``."""
        return sorted(self._plugin_tables)

    def display(self) -> dict[str, Any]:
        """Settings as shown to people: JSON-compatible, secrets masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = mask_url(self.resolved_database_url)
        return data


class PluginSettings(BaseModel):
    """Base class of a plugin's settings model (see ``vendo_settings_model``).

    Unknown keys are errors, so a misspelled setting never goes unnoticed.
    """

    model_config = ConfigDict(extra="forbid")


def mask_url(url: str) -> str:
    """Hide the password of a database URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def env_name(plugin_name: str) -> str:
    """The environment prefix of a plugin's settings: ``billing-stripe`` → ``VENDO_BILLING_STRIPE__``."""
    return ENV_PREFIX + plugin_name.upper().replace("-", "_").replace(".", "_") + "__"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}. Fix the syntax of that line.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None


def _find_config_file(config_file: str | Path | None) -> Path | None:
    explicit = config_file or os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} not found (given by {'--config' if config_file else CONFIG_ENV}).")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One readable line per problem of a pydantic validation error."""
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        problems.append(f"{loc}: {message}")
    return f"{where}: " + "; ".join(problems)


def load_settings(
    config_file: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    plugin_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read the kernel's settings from overrides, the environment, ``.env`` and ``vendo.toml``.

    :param config_file: a ``vendo.toml`` path; default ``$VENDO_CONFIG`` or ``./vendo.toml`` if present.
    :param overrides: values that win over every other source (nested dicts for sections).
    :param plugin_settings: per-plugin tables that replace the file's ``[<plugin>]`` tables
        (environment variables still win), e.g. ``{"billing-stripe": {"secret_key": "..."}}``.
    :raises ConfigError: with one message naming the file, the setting and the fix.
    """
    path = _find_config_file(config_file)
    document = _read_toml(path) if path else {}
    kernel_part: dict[str, Any] = {}
    plugin_tables: dict[str, dict[str, Any]] = {}
    for key, value in document.items():
        if key in Settings.model_fields:
            kernel_part[key] = value
        elif isinstance(value, dict):
            plugin_tables[key] = value
        else:
            close = difflib.get_close_matches(key, Settings.model_fields, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else " Plugin settings go in a [<plugin-name>] table."
            raise ConfigError(f"{path}: unknown setting '{key}'.{hint}")
    token = _toml_data.set(kernel_part)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        where = f"{path} or the VENDO_* environment" if path else "the VENDO_* environment"
        raise ConfigError(format_validation_error(exc, f"invalid settings in {where}")) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings in the VENDO_* environment or .env: {exc}") from None
    finally:
        _toml_data.reset(token)
    settings._config_file = path
    settings._plugin_tables = {**plugin_tables, **{k: dict(v) for k, v in (plugin_settings or {}).items()}}
    return settings


def _env_values(prefix: str) -> dict[str, str]:
    """``VENDO_*`` values from ``.env`` then the environment (which wins), under ``prefix``."""
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    if Path(".env").is_file():
        values.update({k: v for k, v in dotenv_values(".env").items() if v is not None})
    values.update(os.environ)
    return {name: value for name, value in values.items() if name.startswith(prefix)}


def _decode_env_value(value: str) -> Any:
    text = value.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


def resolve_plugin_settings(settings: Settings, plugin_name: str, model: type[BaseModel]) -> BaseModel:
    """Build a plugin's settings from its ``vendo.toml`` table and ``VENDO_<NAME>__*`` variables.

    :raises ConfigError: naming the plugin and each invalid field.
    """
    data = settings.plugin_table(plugin_name)
    prefix = env_name(plugin_name)
    for name, value in _env_values(prefix).items():
        path = [part.lower() for part in name[len(prefix):].split("__") if part]
        if not path:
            continue
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[path[-1]] = _decode_env_value(value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, f"invalid settings for plugin '{plugin_name}' ([{plugin_name}] in vendo.toml or {prefix}*)")
        ) from None


def unknown_env_names(plugin_names: list[str]) -> list[str]:
    """``VENDO_*`` environment names that match no kernel setting and no plugin."""
    known_prefixes = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    known_prefixes += [env_name(name) for name in plugin_names]
    unknown = []
    for name in _env_values(ENV_PREFIX):
        if name in _NOT_SETTINGS or name.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        if not any(name == p or name.startswith(p if p.endswith("__") else p + "__") for p in known_prefixes):
            unknown.append(name)
    return sorted(unknown)
