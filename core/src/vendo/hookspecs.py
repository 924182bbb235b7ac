"""Every hook a Vendo plugin can implement, in one place.

A plugin is a module (or object) whose functions named ``vendo_<hook>`` implement these
specifications; mark them with :data:`vendo.hookimpl` (unmarked ``vendo_*`` functions are
picked up too, so a forgotten marker never hides an implementation). A plugin may accept
any subset of a hook's parameters, in any order. Implementations that are ``async def``
are awaited by the kernel wherever the hook says "may be async".

Two parameters are available on most hooks:

- ``kernel``: the running :class:`vendo.Kernel` (settings, database, outbox, providers).
- ``settings``: the calling plugin's *own* settings, an instance of the model it returned
  from :func:`vendo_settings_model`, or ``None`` if it declares none.

The reference documentation (``docs/hooks.md``) is generated from these docstrings and a
test fails when a hook is missing from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from pathlib import Path

    from vendo.config import PluginSettings
    from vendo.events import Event
    from vendo.kernel import Kernel

PROJECT_NAME = "vendo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: The hooks whose implementations may be ``async def`` (the kernel awaits them). Every other
#: hook is called synchronously, and an ``async def`` implementation of it is refused.
ASYNC_HOOKS = frozenset({"vendo_startup", "vendo_shutdown", "vendo_on_event"})


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@hookspec
def vendo_settings_model() -> type[PluginSettings] | None:
    """Declare the plugin's own settings.

    Return a subclass of :class:`vendo.PluginSettings` (a pydantic model). The kernel
    fills it from the ``[<plugin-name>]`` table of ``vendo.toml`` and from environment
    variables ``VENDO_<PLUGIN_NAME>__<FIELD>`` (plugin name upper-cased, ``-`` as ``_``;
    environment wins over the file), validates it, and passes the instance as the
    ``settings`` argument of this plugin's other hooks. Use ``pydantic.SecretStr`` for
    secrets: they are masked wherever settings are shown.

    Invalid values mark the plugin ``failed`` with a message naming the field (or stop
    start-up in strict mode).

    :return: the settings model class, or ``None`` when the plugin has no settings.

    Added in API 1.0.
    """


# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------


@hookspec
def vendo_startup(kernel: Kernel, settings: PluginSettings | None) -> Any:
    """Run once when the kernel starts serving (HTTP app start-up, or a CLI command that
    needs running plugins). May be async.

    Called after every plugin is loaded, the providers are registered and the database
    was checked to be at its current migrations. Raise :class:`vendo.StartupError` to stop
    start-up with a readable message; any other exception also stops start-up, reported
    with the plugin's name.

    :param kernel: the running kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_shutdown(kernel: Kernel, settings: PluginSettings | None) -> Any:
    """Run once when the kernel stops, in the reverse order of :func:`vendo_startup`. May be async.

    Release what ``vendo_startup`` acquired (clients, pools, background tasks). An exception
    is logged with the plugin's name and does not prevent other plugins from shutting down.

    :param kernel: the kernel being stopped.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_routes(
    register: Callable[..., None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Add HTTP routes to the app.

    Call ``register(router, prefix="/api/v1")`` with a ``fastapi.APIRouter`` once per
    router. Routes are mounted under ``prefix`` (``/api/v1`` by default; pass another
    prefix such as ``""`` for routes that must live elsewhere, e.g. OpenAI-compatible
    ``/v1/...`` paths). Two plugins registering the same method and path is an error
    that fails the second plugin. Raise ``vendo.VendoError`` subclasses from handlers to
    answer with Vendo's JSON error shape.

    :param register: ``register(router: APIRouter, *, prefix: str = "/api/v1") -> None``.
    :param kernel: the kernel the app serves.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_commands(register: Callable[..., None], settings: PluginSettings | None) -> None:
    """Add sub-commands to the ``vendo`` command line.

    Call ``register(app, name=None)`` with a ``typer.Typer`` app: a command group such as
    ``vendo billing ...``. ``name`` defaults to the Typer app's ``name``. A name already taken by the kernel or by
    another plugin fails the second plugin. Commands that need the kernel get it with
    :func:`vendo.cli_kernel` at run time; do not build one at import.

    :param register: ``register(app: typer.Typer, name: str | None = None) -> None``.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_migrations() -> str | Path | None:
    """Declare the directory holding this plugin's Alembic revisions.

    Each plugin owns one Alembic branch: its first revision sets
    ``branch_labels = ("<plugin-name>",)`` and ``depends_on`` the kernel revision it needs
    (the kernel's branch label is ``vendo``). Tables belong to :data:`vendo.Model`'s
    metadata so constraint names follow one naming convention. ``vendo db upgrade``
    applies every branch; the server refuses to start while any branch is behind.

    :return: a directory path, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_on_event(event: Event, kernel: Kernel, settings: PluginSettings | None) -> Any:
    """Receive a domain event published through the kernel's outbox. May be async.

    Delivery is at least once, per subscribing plugin: an exception marks this plugin's
    delivery failed and it is retried later with exponential backoff, without
    re-delivering to plugins that succeeded. After ``outbox.max_attempts`` failures the
    delivery is ``dead`` and stays visible in ``vendo outbox list``. Make handlers
    idempotent (``event.id`` is stable across retries) and filter on ``event.type``.

    :param event: the event (``id``, ``type``, ``payload``, ``created_at``, ``attempt``).
    :param kernel: the running kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


# ---------------------------------------------------------------------------
# Privacy: every plugin holding personal data answers for it (GDPR)
# ---------------------------------------------------------------------------


@hookspec
def vendo_export_user_data(user_id: str, session: Any, kernel: Kernel, settings: PluginSettings | None) -> Any:
    """Contribute this plugin's personal data about a user to their GDPR export.

    Called when a user asks for everything held about them (``GET /api/v1/me/export``). Return
    JSON-compatible data (it appears under the plugin's name in the document), or ``None``
    when the plugin holds nothing about them. Never include secrets (hashes, keys, seeds):
    say that they exist instead.

    :param user_id: the user's id.
    :param session: the SQLAlchemy session of the export (read only).
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_erase_user_data(user_id: str, session: Any, kernel: Kernel, settings: PluginSettings | None) -> None:
    """Delete or anonymise this plugin's data about a user who deletes their account.

    Runs inside the erasure's transaction, before the kernel deletes the user: write through
    ``session`` so the erasure commits or rolls back as a whole; raising aborts it. Keep
    records the law requires (invoices) but strip what identifies the person.

    :param user_id: the user's id.
    :param session: the SQLAlchemy session of the erasure.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_revoke_user_credentials(user_id: str, reason: str, session: Any, kernel: Kernel,
                                  settings: PluginSettings | None) -> None:
    """Revoke every sign-in credential this plugin holds for a user: passwords, second
    factors, pending reset tokens, API keys the user created.

    The kernel calls it when an account's ownership changes hands. Today one reason exists,
    ``account_claimed``: someone proved they own the account's email address (a verified
    identity provider address) while the account's own address had never been verified, so
    whoever set its credentials may not be that owner (account pre-hijacking). Runs inside
    the claim's transaction, after the kernel ended the user's sessions; write through
    ``session``; raising aborts the claim (and the sign-in that made it). The owner signs in
    with the method that claimed the account, and can set a new password from there.

    :param user_id: the user's id.
    :param reason: why (``account_claimed``).
    :param session: the SQLAlchemy session of the claim.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_erase_workspace_data(workspace_id: str, session: Any, kernel: Kernel,
                               settings: PluginSettings | None) -> None:
    """Delete this plugin's data about a workspace that is being deleted.

    Runs inside the deletion's transaction (a shared workspace deleted by its owner, or a
    personal workspace erased with its user); raising aborts the deletion.

    :param workspace_id: the workspace's id.
    :param session: the SQLAlchemy session of the deletion.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


# ---------------------------------------------------------------------------
# Capability families: providers registered by name
#
# Each hook receives ``register(name, provider)``. The kernel records which plugin
# registered which name and refuses a duplicate name within a family (the second
# plugin fails, naming the first). Which providers are active is configuration:
# ``[providers] <family> = "name"`` (or a list for families that allow several).
# ---------------------------------------------------------------------------


@hookspec
def vendo_register_authenticators(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register authenticators: objects turning a request into a :class:`vendo.Principal`.

    Family ``auth``, several active at once: they form a chain tried in the order of
    ``providers.auth`` (or registration order). Each provider implements
    :class:`vendo.Authenticator`.

    :param register: ``register(name: str, authenticator: Authenticator) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_billing_providers(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register billing providers (payments, checkout, subscriptions, webhooks).

    Family ``billing``, exactly one active: when several are installed, choose one with
    ``providers.billing``; without a choice the no-payment ``local`` provider
    (vendo-billing-local) is used if installed, and start-up says so otherwise. The kernel's
    ``kernel.billing`` drives subscriptions from the events the active provider's webhooks
    parse into (``POST /api/v1/billing/webhooks/{name}``). Each provider implements
    :class:`vendo.BillingProvider` (customers, hosted checkout, cancellation, and webhooks
    verified and translated into :class:`vendo.BillingEvent`).

    :param register: ``register(name: str, provider: BillingProvider) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_license_backends(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register license backends (issue, verify, revoke, activate license keys).

    Family ``license``, exactly one active (``providers.license`` when several). Each
    backend implements :class:`vendo.LicenseBackend`; verification answers carry one of
    :data:`vendo.LICENSE_CODES`. A backend whose proofs apps check offline also implements
    :class:`vendo.OfflineLicenseBackend` (signed license files, a signed revocation list,
    public keys by key id, get/list).

    :param register: ``register(name: str, backend: LicenseBackend) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_ai_providers(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register AI providers (chat, streaming, embeddings, models, token costs).

    Family ``ai``, several active at once (requests are routed by model). Each provider
    implements :class:`vendo.AIProvider`.

    :param register: ``register(name: str, provider: AIProvider) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_knowledge_connectors(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register knowledge connectors (sources of documents: files, URLs, Notion, Drive...).

    Family ``knowledge``, several active at once. Each connector implements
    :class:`vendo.KnowledgeConnector` (``fetch(source)`` yields :class:`vendo.Document`).

    :param register: ``register(name: str, connector: KnowledgeConnector) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_vector_stores(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register vector stores (where knowledge chunks and their embeddings are searched).

    Family ``vector_store``, exactly one active (``providers.vector_store`` when several).
    Each store implements :class:`vendo.VectorStore`.

    :param register: ``register(name: str, store: VectorStore) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_counter_stores(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register counter stores: where usage counters and rate-limit windows are kept.

    Family ``counters``, exactly one active (``providers.counters`` when several). The kernel
    registers ``sql`` (the database, counters in the caller's transaction); a store plugin
    (Redis...) implements :class:`vendo.CounterStore`: an atomic
    "add to several counters only if all stay within their limits", plus ``add``, ``read``
    and ``overwrite`` (``vendo usage rebuild``). A store outside the database registers the
    opposite of every move with :func:`vendo.on_rollback` (the ledger entry of the same call
    may still roll back) and raises :class:`vendo.CounterStoreUnavailable` when unreachable,
    so each feature's failure policy applies.

    :param register: ``register(name: str, store: CounterStore) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_tools(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register tools that agents and integrators can call (HTTP, SQL, MCP servers...).

    Family ``tool``, several active at once. Each tool implements :class:`vendo.Tool`
    (``name``, ``description``, JSON-schema ``parameters``, ``run(arguments)``); the
    registered name must equal ``tool.name``.

    :param register: ``register(name: str, tool: Tool) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """


@hookspec
def vendo_register_notifiers(
    register: Callable[[str, Any], None], kernel: Kernel, settings: PluginSettings | None
) -> None:
    """Register notifiers: senders of the notifications requested with :meth:`vendo.Kernel.notify`.

    Family ``notifier``, several active at once, one used per channel: each notifier
    implements :class:`vendo.Notifier` and names its ``channel`` (``"email"``...). The kernel
    delivers every ``notification.requested`` event from the outbox to the first active
    notifier of the event's channel (``providers.notifier`` order, or registration order), so
    a send that raises is retried with backoff and ends ``dead`` after ``outbox.max_attempts``.
    While no notifier serves a channel, its notifications wait in the outbox as ``pending``
    (never attempted, shown by ``vendo outbox list``) and go out once one is registered.
    A plugin that is installed but not configured (no server address) registers nothing.

    :param register: ``register(name: str, notifier: Notifier) -> None``.
    :param kernel: the kernel.
    :param settings: this plugin's settings, or ``None``.

    Added in API 1.0.
    """
