"""Email and password sign-in for Vendo (the ``auth-password`` plugin).

Routes under ``/api/v1/auth`` (register, login, password change/forgot/reset, email
verification, TOTP two-factor authentication), its own tables on its own Alembic branch,
GDPR export and erasure, and an optional HTTP Basic authenticator. Importing this module
loads nothing heavy: the service is built when the kernel registers the plugin.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vendo import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel

    from vendo_auth_password.service import PasswordAuth
    from vendo_auth_password.settings import PasswordSettings

vendo_api = ">=1.0,<2"

#: The directory of this plugin's Alembic revisions (branch ``auth-password``).
MIGRATIONS = Path(__file__).parent / "migrations"

_services: weakref.WeakKeyDictionary[Any, PasswordAuth] = weakref.WeakKeyDictionary()


def service_for(kernel: Kernel, settings: PasswordSettings | None = None) -> PasswordAuth:
    """The kernel's password service (one per kernel, made on first use).

    :param settings: this plugin's settings; default: those the kernel resolved for it.
    """
    from vendo_auth_password.service import PasswordAuth
    from vendo_auth_password.settings import PasswordSettings

    service = _services.get(kernel)
    if service is None or (settings is not None and service.settings is not settings):
        if settings is None:
            info = next((p for p in kernel.plugins if p.module == __name__ and p.status == "ok"), None)
            settings = kernel.plugin_settings(info.name) if info is not None else None
        service = PasswordAuth(kernel, settings if settings is not None else PasswordSettings())
        _services[kernel] = service
    return service


@hookimpl
def vendo_settings_model() -> Any:
    """``[auth-password]`` settings: lockout, throttling, token lifetimes, 2FA, argon2."""
    from vendo_auth_password.settings import PasswordSettings

    return PasswordSettings


@hookimpl
def vendo_migrations() -> Path:
    """The plugin's Alembic branch: credentials, single-use tokens, recovery codes, attempts."""
    return MIGRATIONS


@hookimpl
def vendo_register_commands(register: Any) -> None:
    """Add ``vendo auth-password unlock EMAIL`` (the operator's command)."""
    from vendo_auth_password.commands import app

    register(app, name="auth-password")


@hookimpl
def vendo_register_routes(register: Any, kernel: Any, settings: Any) -> None:
    """``/api/v1/auth/register``, ``/login``, ``/password/*``, ``/email/verify*``, ``/2fa/*``."""
    from vendo_auth_password.endpoints import build_router

    register(build_router(service_for(kernel, settings)))


@hookimpl
def vendo_register_authenticators(register: Any, kernel: Any, settings: Any) -> None:
    """The ``password`` authenticator (HTTP Basic), only when ``basic_auth = true``."""
    if settings is not None and settings.basic_auth:
        from vendo_auth_password.authenticator import BasicAuthenticator

        register("password", BasicAuthenticator(service_for(kernel, settings)))


@hookimpl
def vendo_export_user_data(user_id: str, session: Any) -> Any:
    """Whether the user has a password and 2FA, recovery codes left, pending email tokens."""
    from vendo_auth_password.privacy import export_user

    return export_user(session, user_id)


@hookimpl
def vendo_revoke_user_credentials(user_id: str, session: Any) -> None:
    """An account claimed by its address's verified owner: the password, 2FA, recovery codes
    and pending email tokens set before go (the owner can set a password again)."""
    from vendo_auth_password.privacy import revoke_credentials

    revoke_credentials(session, user_id)


@hookimpl
def vendo_erase_user_data(user_id: str, session: Any, kernel: Any) -> None:
    """Delete the user's credential, tokens, recovery codes and sign-in attempts."""
    from vendo_auth_password.privacy import erase_user

    erase_user(session, kernel, user_id)
