"""vendo-auth-apikeys: workspace API keys for Vendo.

Keys look like ``vk_live_<id><secret>`` (or ``vk_test_...``), are shown once at creation
and stored only as a keyed hash. They carry scopes, an optional expiry and a rate-limit
tier, rotate with an overlap window and are revoked at once. The ``api_key`` authenticator
accepts ``Authorization: Bearer vk_...`` and ``X-API-Key: vk_...``; the routes live under
``/api/v1/workspaces/{workspace_id}/api-keys``. See the README for the details.

Importing this module is cheap: the hooks import the rest when the kernel calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vendo import hookimpl

vendo_api = ">=1.0,<2"

#: The name of the plugin (its entry point) and of its settings table.
PLUGIN_NAME = "auth-apikeys"
#: The name the authenticator is registered under (family ``auth``).
AUTHENTICATOR_NAME = "api_key"


def _service(kernel: Any, settings: Any) -> Any:
    from vendo_auth_apikeys.service import ApiKeys

    return ApiKeys(kernel, settings)


@hookimpl
def vendo_settings_model() -> Any:
    """The ``[auth-apikeys]`` settings (see :class:`vendo_auth_apikeys.settings.ApiKeySettings`)."""
    from vendo_auth_apikeys.settings import ApiKeySettings

    return ApiKeySettings


@hookimpl
def vendo_migrations() -> str:
    """The plugin's Alembic branch ``auth-apikeys`` (first revision depends on ``vendo_0002``)."""
    return str(Path(__file__).parent / "migrations")


@hookimpl
def vendo_register_authenticators(register: Any, kernel: Any, settings: Any) -> None:
    """Register the ``api_key`` authenticator."""
    from vendo_auth_apikeys.authenticator import ApiKeyAuthenticator

    register(AUTHENTICATOR_NAME, ApiKeyAuthenticator(_service(kernel, settings)))


@hookimpl
def vendo_register_commands(register: Any) -> None:
    """Add ``vendo api-keys list|set-tier|revoke`` (the operator's commands)."""
    from vendo_auth_apikeys.commands import app

    register(app, name="api-keys")


@hookimpl
def vendo_register_routes(register: Any, kernel: Any, settings: Any) -> None:
    """Mount ``/api/v1/workspaces/{workspace_id}/api-keys`` (create, list, get, rotate, revoke)."""
    from vendo_auth_apikeys.routes import build_router

    register(build_router(kernel, _service(kernel, settings)))


@hookimpl
def vendo_export_user_data(user_id: str, session: Any, kernel: Any, settings: Any) -> Any:
    """The metadata of the keys the user created (never a secret), or ``None``."""
    return _service(kernel, settings).export_user(session, user_id)


@hookimpl
def vendo_erase_user_data(user_id: str, session: Any, kernel: Any, settings: Any) -> None:
    """Delete the keys the user created, in the erasure's transaction."""
    _service(kernel, settings).erase_user(session, user_id)


@hookimpl
def vendo_revoke_user_credentials(user_id: str, reason: str, session: Any, kernel: Any, settings: Any) -> None:
    """Revoke the keys the user created (an account claimed by its address's verified owner)."""
    _service(kernel, settings).revoke_created_by(session, user_id, reason)


@hookimpl
def vendo_erase_workspace_data(workspace_id: str, session: Any, kernel: Any, settings: Any) -> None:
    """Delete the keys of a workspace being deleted."""
    _service(kernel, settings).erase_workspace(session, workspace_id)
