"""vendo-auth-oidc: sign in to Vendo with OpenID Connect providers and GitHub.

Adds sign-in routes under ``/api/v1/auth/oidc`` (authorization code flow with PKCE S256,
``state`` and ``nonce`` kept server-side, single use and short-lived; the ID token checked
against the provider's JWKS). A finished sign-in is a kernel session (``kernel.sessions``):
its access token is checked by the kernel's own ``session`` authenticator, so this plugin
registers no authenticator.

Modules: :mod:`.settings` (``[auth-oidc]``), :mod:`.upstream` (providers),
:mod:`.idtoken` (ID token validation), :mod:`.flows` (started sign-ins),
:mod:`.accounts` (users, links, GDPR), :mod:`.redirects` (``next``), :mod:`.service`
(the flow) and :mod:`.routes` (HTTP). Nothing heavy is imported until a hook runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vendo import hookimpl

vendo_api = ">=1.0,<2"

MIGRATIONS = Path(__file__).parent / "migrations"


@hookimpl
def vendo_settings_model() -> type:
    """``[auth-oidc]`` settings: providers, ``redirect_base_url``, allowed ``next`` origins."""
    from vendo_auth_oidc.settings import Settings

    return Settings


@hookimpl
def vendo_migrations() -> str:
    """The ``auth-oidc`` Alembic branch (tables ``auth_oidc_states`` and ``auth_oidc_links``)."""
    return str(MIGRATIONS)


@hookimpl
def vendo_register_routes(register: Any, kernel: Any, settings: Any) -> None:
    """``GET /api/v1/auth/oidc/providers``, ``.../{provider}/login`` and ``.../{provider}/callback``."""
    from vendo_auth_oidc.routes import build_router
    from vendo_auth_oidc.service import OidcService
    from vendo_auth_oidc.upstream import oauth2_client_class

    oauth2_client_class()  # import Authlib's client now, not during the first sign-in
    register(build_router(OidcService(kernel, settings)))


@hookimpl
def vendo_export_user_data(user_id: str, session: Any) -> Any:
    """The providers linked to the user (provider, subject, email at link time, dates)."""
    from vendo_auth_oidc.accounts import Accounts

    return Accounts.export(session, user_id)


@hookimpl
def vendo_erase_user_data(user_id: str, session: Any) -> None:
    """Delete the user's provider links (in the erasure's transaction)."""
    from vendo_auth_oidc.accounts import Accounts

    Accounts.erase(session, user_id)
