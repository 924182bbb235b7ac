"""The kernel: settings, one plugin manager, providers, storage and the outbox.

Creating a :class:`Kernel` does nothing; :meth:`Kernel.load` discovers and registers
plugins; :meth:`Kernel.start` also checks the database and runs ``vendo_startup``.
Every kernel has its own plugin manager, so kernels never leak into one another.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from vendo.ai import AI
from vendo.billing.service import Billing
from vendo.capabilities import FAMILIES
from vendo.config import (
    Settings,
    load_settings,
    mask_url,
    resolve_plugin_settings,
    unknown_env_names,
)
from vendo.db import READ_ONLY, make_engine, sqlite_path, utcnow
from vendo.errors import ConfigError, DatabaseError, StartupError, VendoError
from vendo.hooks import HookCallError, Hooks
from vendo.entitlements.flags import Flags
from vendo.entitlements.ratelimit import RateLimiter
from vendo.entitlements.service import Entitlements
from vendo.identity.audit import Audit
from vendo.identity.service import Identity
from vendo.identity.sessions import Sessions
from vendo.metrics import Metrics
from vendo.notifications import Notifications
from vendo.outbox import Outbox
from vendo.plugins import PluginInfo, check_api, discover, new_plugin_manager, register_plugin
from vendo.providers import Providers, Registration
from vendo.secrets import Secrets

log = logging.getLogger("vendo.kernel")


class Kernel:
    """One Vendo instance: its settings, plugins, providers, database and outbox.

    :param settings: kernel settings; default :func:`vendo.config.load_settings`.
    :param plugins: plugin objects (modules or instances) to register by name, besides
        the entry points (set ``plugins.autoload = false`` to use only these).
    :param clock: a function returning the current aware UTC datetime (tests freeze it).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Mapping[str, object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.clock = clock or utcnow
        self.pm = new_plugin_manager()
        self.metrics = Metrics()
        self.hooks = Hooks(self.pm, self.plugin_settings, trace=self.settings.plugins.trace)
        self.hooks.add_observer(self.metrics.observe_hook)
        self.providers = Providers()
        self.outbox = Outbox(self)
        self.notifications = Notifications(self)
        self.identity = Identity(self)
        self.sessions = Sessions(self)
        self.audit = Audit(self)
        self.entitlements = Entitlements(self)
        self.rate_limits = RateLimiter(self)
        self.flags = Flags(self)
        self.billing = Billing(self)
        self.ai = AI(self)
        self._secrets: Secrets | None = None
        self.plugins: list[PluginInfo] = []
        self.routes: list[tuple[str, Any, str]] = []
        self.warnings: list[str] = []
        self._explicit = dict(plugins or {})
        self._plugin_settings: dict[str, BaseModel] = {}
        self._route_keys: dict[tuple[str, str], str] = {}
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._read_sessions: sessionmaker[Session] | None = None
        self._loaded = False
        self._started: list[str] | None = None

    # -- plugins ---------------------------------------------------------------

    def now(self) -> datetime:
        """The kernel's current time (aware, UTC); injectable through ``clock``."""
        return self.clock()

    def notify(self, session: Session, *, to: str, template: str, context: Mapping[str, Any],
               idempotency_key: str, channel: str = "email",
               secret_context: Mapping[str, Any] | None = None) -> Any:
        """Ask for a notification (an email...) in ``session``'s transaction.

        Publishes the outbox event ``notification.requested`` with the payload
        ``{"channel", "to", "template", "context", "idempotency_key"}`` (and ``"sealed"``);
        the notifier of the channel sends it once the transaction commits (retried with
        backoff). The same ``idempotency_key`` publishes once: a second call returns the
        first event. The same as :meth:`vendo.notifications.Notifications.request`.

        :param session: the transaction of the change the notification announces.
        :param to: the recipient (a valid email address for ``email``).
        :param template: ``license_key``, ``invitation``, ``password_reset``, ``payment_failed``...
        :param context: the template's values (JSON-compatible), stored in clear.
        :param idempotency_key: a stable key of what is notified (e.g. ``license:<id>``).
        :param channel: the notifier channel, ``email`` by default.
        :param secret_context: more template values that are secrets (a key, a link carrying a
            token or one-time code): sealed at rest, handed only to the notifier, merged into
            the context; never stored or shown in clear.
        :return: the :class:`vendo.Event` published (or published before with that key).
        :raises InvalidInput: bad address, template name, context or key; a name in both
            ``context`` and ``secret_context``.
        """
        return self.notifications.request(session, to=to, template=template, context=context,
                                          idempotency_key=idempotency_key, channel=channel,
                                          secret_context=secret_context)

    @property
    def secrets(self) -> Secrets:
        """Keys derived from the master secret (``secret_key``, or ``<data_dir>/secret.key``)."""
        if self._secrets is None:
            configured = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
            self._secrets = Secrets.from_settings(configured, self.settings.data_dir)
        return self._secrets

    async def authenticate(self, request: Any) -> Any:
        """The request's :class:`vendo.Principal` from the first authenticator of the chain
        (``providers.auth`` order) that recognises its credentials, or ``None``.

        :raises Unauthorized: credentials of a known kind that are rejected.
        """
        import inspect

        for authenticator in self.providers.active("auth"):
            principal = authenticator.authenticate(request)
            if inspect.isawaitable(principal):
                principal = await principal
            if principal is not None:
                return principal
        return None

    def plugin(self, name: str) -> PluginInfo | None:
        """The plugin of that name that loaded (or was last tried), if any."""
        found = [p for p in self.plugins if p.name == name]
        ok = [p for p in found if p.status == "ok"]
        return (ok or found or [None])[-1]

    def plugin_settings(self, name: str) -> Any:
        """A plugin's validated settings (``None`` when it declares none)."""
        return self._plugin_settings.get(name)

    def load(self) -> Kernel:
        """Discover, import and register plugins; idempotent.

        :raises StartupError: in strict mode, when any enabled plugin failed.
        """
        if self._loaded:
            return self
        controls = self.settings.plugins
        for candidate in discover(self._explicit, controls.autoload):
            info = PluginInfo(
                name=candidate.name,
                module=candidate.module,
                distribution=candidate.distribution,
                version=candidate.version,
                builtin=candidate.builtin,
            )
            self.plugins.append(info)
            if any(p.name == info.name and p.status == "ok" for p in self.plugins[:-1]):
                self._fail(info, f"another plugin already uses the name '{info.name}'")
                continue
            if self._is_disabled(info):
                info.status = "disabled"
                continue
            try:
                obj = candidate.load()
            except (Exception, SystemExit) as exc:
                self._fail(info, f"import failed: {type(exc).__name__}: {str(exc).strip() or '(no message)'}")
                log.debug("plugin %s import traceback", info.name, exc_info=True)
                continue
            info.api, problem = check_api(obj)
            if problem:
                info.status, info.error = "incompatible", problem
                log.warning("plugin '%s' skipped: %s", info.name, problem)
                continue
            info.hooks, error = register_plugin(self.pm, info.name, obj)
            if error is None:
                error = self._activate(info.name)
                if error is not None:
                    self.pm.unregister(name=info.name)
            if error is not None:
                info.hooks = []
                self._fail(info, error)
        self.pm.check_pending()
        self._loaded = True
        self._collect_warnings()
        for status in ("ok", "disabled", "failed", "incompatible"):
            self.metrics.plugins.labels(status).set(sum(p.status == status for p in self.plugins))
        broken = [p for p in self.plugins if p.status in ("failed", "incompatible")]
        if controls.strict and broken:
            raise StartupError(
                "strict mode: " + "; ".join(f"plugin '{p.name}' {p.status}: {p.error}" for p in broken)
            )
        return self

    def _is_disabled(self, info: PluginInfo) -> bool:
        controls = self.settings.plugins
        if info.builtin:
            if info.name in controls.disabled:
                self.warnings.append(f"built-in plugin '{info.name}' cannot be disabled")
            return False
        if info.name in controls.disabled:
            return True
        return controls.enabled is not None and info.name not in controls.enabled

    def _fail(self, info: PluginInfo, error: str) -> None:
        info.status, info.error = "failed", error
        log.error("plugin '%s' failed and was skipped: %s", info.name, error)

    def _activate(self, name: str) -> str | None:
        """Settings, providers and routes of one plugin, all or nothing; the error if any."""
        try:
            model = self.hooks.settings_model(name)
            if model is not None:
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    return f"vendo_settings_model returned {model!r}, not a pydantic model class"
                self._plugin_settings[name] = resolve_plugin_settings(self.settings, name, model)
            registrations: list[Registration] = []
            info = self.plugin(name)
            builtin = info is not None and info.builtin
            for family in FAMILIES.values():
                register = self.providers.collector(name, family, registrations, builtin=builtin)
                self.hooks.call_plugin(family.hook, name, register=register, kernel=self)
            routes: list[tuple[str, Any, str]] = []
            self.hooks.call_plugin(
                "vendo_register_routes", name, register=self._route_collector(name, routes), kernel=self
            )
        except HookCallError as exc:
            self._plugin_settings.pop(name, None)
            return f"{exc.hook}: {type(exc.cause).__name__}: {exc.cause}"
        except ConfigError as exc:
            return exc.message
        self.providers.commit(registrations)
        for plugin, router, prefix in routes:
            for key in self._route_keys_of(router, prefix):
                self._route_keys[key] = plugin
        self.routes.extend(routes)
        return None

    def _route_keys_of(self, router: Any, prefix: str) -> list[tuple[str, str]]:
        keys = []
        for route in router.routes:
            for method in sorted(getattr(route, "methods", None) or {"*"}):
                keys.append((method, prefix + getattr(route, "path", "")))
        return keys

    def _route_collector(self, plugin: str, routes: list[tuple[str, Any, str]]) -> Callable[..., None]:
        def register(router: Any, *, prefix: str = "/api/v1") -> None:
            from fastapi import APIRouter

            if not isinstance(router, APIRouter):
                raise TypeError(f"register() expects a fastapi.APIRouter, got {type(router).__name__}")
            if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
                raise ValueError(f"route prefix must start with '/' and not end with one, got {prefix!r}")
            pending = {k for _, r, p in routes for k in self._route_keys_of(r, p)}
            for key in self._route_keys_of(router, prefix):
                owner = self._route_keys.get(key) or (plugin if key in pending else None)
                if owner is not None:
                    raise ValueError(f"route {key[0]} {key[1]} is already registered by plugin '{owner}'")
            routes.append((plugin, router, prefix))

        return register

    def _collect_warnings(self) -> None:
        names = [p.name for p in self.plugins]
        for table in self.settings.plugin_table_names:
            if table not in names:
                self.warnings.append(f"vendo.toml has settings for plugin '{table}', which is not installed")
        for name in unknown_env_names(names):
            self.warnings.append(f"environment variable {name} is not a Vendo setting")
        for warning in self.warnings:
            log.warning("%s", warning)

    # -- storage ----------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            self._engine = make_engine(self.settings.resolved_database_url)
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
            self._read_sessions = sessionmaker(self._engine.execution_options(**{READ_ONLY: True}),
                                               expire_on_commit=False)
        return self._engine

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error.

        ``read_only``: the transaction only reads. On SQLite it then begins without taking the
        write lock (it neither waits for writers nor holds them up); it must not write."""
        self.engine
        maker = self._read_sessions if read_only else self._sessions
        assert maker is not None
        with maker.begin() as session:
            yield session

    def prepare_storage(self) -> None:
        """Create the data directory and the SQLite file's folder (``vendo db upgrade``)."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = sqlite_path(self.settings.resolved_database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def check_database(self) -> Any:
        """Check the database is reachable and at its current migrations.

        :raises DatabaseError: with a message saying what to run or fix.
        """
        from sqlalchemy.exc import DBAPIError

        from vendo.db import migrations

        url = self.settings.resolved_database_url
        path = sqlite_path(url)
        if path is not None and not path.exists():
            raise DatabaseError(f"database file {path} does not exist yet: run `vendo db upgrade` to create it")
        try:
            with self.engine.connect() as connection:
                status = migrations.status(self, connection)
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseError(
                f"cannot connect to the database {mask_url(url)}: {reason}. "
                "Check VENDO_DATABASE_URL (or database_url in vendo.toml) and that the server runs."
            ) from None
        if not status.up_to_date:
            raise DatabaseError(status.describe())
        return status

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> Kernel:
        """Load plugins, resolve providers, check the database, run ``vendo_startup``.

        :raises StartupError: naming the cause; nothing is left running.
        """
        try:
            self.load()
            self.providers.configure(self.settings.providers)
            self.check_database()
        except ConfigError as exc:
            self.close()
            raise StartupError(exc.message, code=exc.code) from None
        except VendoError:
            self.close()
            raise
        started: list[str] = []
        try:
            for plugin, impl in self.hooks.implementations("vendo_startup"):
                await self.hooks.acall_impl("vendo_startup", plugin, impl, kernel=self)
                started.append(plugin)
        except HookCallError as exc:
            await self.hooks.shutdown(self, started)
            self.close()
            if isinstance(exc.cause, StartupError):
                raise StartupError(f"plugin '{exc.plugin}' stopped start-up: {exc.cause.message}") from None
            raise StartupError(str(exc)) from None
        self._started = started
        return self

    async def stop(self) -> None:
        """Run ``vendo_shutdown`` in reverse order and release the database."""
        if self._started is not None:
            await self.hooks.shutdown(self, self._started)
            self._started = None
        self.close()

    def close(self) -> None:
        """Dispose of the database engine (pooled connections)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._sessions = None
            self._read_sessions = None
