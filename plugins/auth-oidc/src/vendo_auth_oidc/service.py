"""The sign-in flow, start to finish, for one kernel: login → provider → callback → session.

The HTTP layer (:mod:`vendo_auth_oidc.routes`) only translates requests and responses; every
rule lives here, in :mod:`~vendo_auth_oidc.flows` (state), :mod:`~vendo_auth_oidc.upstream`
(providers) and :mod:`~vendo_auth_oidc.accounts` (users and links).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vendo import VendoError
from vendo_auth_oidc import errors
from vendo_auth_oidc.accounts import Accounts
from vendo_auth_oidc.flows import Flows, cookie_name
from vendo_auth_oidc.idtoken import TENANT_PLACEHOLDER
from vendo_auth_oidc.redirects import check_next
from vendo_auth_oidc.upstream import OidcUpstream, Upstream, make_upstream

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel
    from vendo_auth_oidc.settings import Settings

#: Where the plugin's router is mounted (the kernel's default prefix).
API_PREFIX = "/api/v1"
ROUTE_PREFIX = "/auth/oidc"


@dataclass(frozen=True)
class LoginRedirect:
    """Where to send the browser, and the cookie binding the sign-in to it (if any)."""

    url: str
    cookie_name: str | None
    cookie_value: str | None
    cookie_path: str
    cookie_secure: bool
    max_age: int


@dataclass(frozen=True)
class SignedIn:
    """A finished sign-in: the kernel's token pair and where to take the browser (if anywhere)."""

    tokens: dict[str, Any]
    next_url: str | None
    cookie_name: str
    cookie_path: str


class OidcService:
    """Starts and finishes sign-ins with the configured providers."""

    def __init__(self, kernel: Kernel, settings: Settings) -> None:
        self.kernel = kernel
        self.settings = settings
        self.upstreams: dict[str, Upstream] = {
            name: make_upstream(name, config, settings) for name, config in settings.providers.items()
        }
        self.flows = Flows(kernel, settings.state_ttl)
        self.accounts = Accounts(kernel)

    def upstream(self, provider: str) -> Upstream:
        """The configured provider of that name.

        :raises NotFound: ``unknown_provider``.
        """
        upstream = self.upstreams.get(provider)
        if upstream is None:
            raise errors.unknown_provider(provider)
        return upstream

    def callback_url(self, provider: str) -> str:
        """The redirect URI registered at the provider for ``provider``."""
        return f"{self.settings.redirect_base_url}{API_PREFIX}{ROUTE_PREFIX}/{provider}/callback"

    def providers(self) -> list[dict[str, Any]]:
        """The configured providers, for sign-in buttons (nothing secret)."""
        return [{"name": name, "kind": upstream.config.kind,
                 "display_name": upstream.config.display_name or name,
                 "login_url": f"{API_PREFIX}{ROUTE_PREFIX}/{name}/login"}
                for name, upstream in sorted(self.upstreams.items())]

    def start(self, provider: str, next_url: str | None) -> LoginRedirect:
        """Begin a sign-in: check ``next``, build the authorization URL, then store the state.

        :raises VendoError: ``unknown_provider``, ``invalid_redirect`` or ``provider_error``
            (discovery failed); nothing is stored then.
        """
        upstream = self.upstream(provider)
        target = check_next(next_url, base_url=self.settings.redirect_base_url,
                            allowed_origins=self.settings.allowed_redirect_origins)
        flow = self.flows.new(self.settings.bind_to_browser)
        redirect_uri = self.callback_url(provider)
        url = upstream.authorization_url(redirect_uri=redirect_uri, state=flow.state, nonce=flow.nonce,
                                         code_verifier=flow.code_verifier)
        self.flows.save(provider, flow, target)
        return LoginRedirect(url=url, cookie_name=cookie_name(flow.state) if flow.browser_secret else None,
                             cookie_value=flow.browser_secret, cookie_path=urlsplit(redirect_uri).path,
                             cookie_secure=redirect_uri.startswith("https://"), max_age=self.settings.state_ttl)

    def finish(self, provider: str, *, state: str | None, code: str | None, error: str | None,
               error_description: str | None, issuer: str | None, cookies: dict[str, str],
               request: Any = None) -> SignedIn:
        """Finish a sign-in from the provider's redirect; audit failures.

        :raises VendoError: ``unknown_provider``, ``invalid_state``, ``provider_error``,
            ``invalid_id_token``, ``email_required``, ``email_unverified``, ``invalid_redirect``.
        """
        upstream = self.upstream(provider)
        try:
            return self._finish(upstream, state=state or "", code=code, error=error,
                                error_description=error_description, issuer=issuer, cookies=cookies,
                                request=request)
        except VendoError as exc:
            self.kernel.audit.record_now("auth.oidc.failed", outcome="failure", target_type="provider",
                                         target_id=provider, details={"provider": provider, "reason": exc.code},
                                         request=request)
            raise

    def _finish(self, upstream: Upstream, *, state: str, code: str | None, error: str | None,
                error_description: str | None, issuer: str | None, cookies: dict[str, str],
                request: Any) -> SignedIn:
        provider = upstream.name
        pending = self.flows.claim(provider, state)
        if not self.flows.same_browser(pending, cookies.get(cookie_name(state))):
            raise errors.invalid_state("was started in another browser")
        if error:
            details: dict[str, Any] = {"error": error[:100]}
            if error_description:
                details["error_description"] = error_description[:300]
            raise errors.provider_error(provider, f"the provider answered error={error[:100]}", **details)
        if issuer is not None and isinstance(upstream, OidcUpstream):
            expected = upstream.endpoints().issuer or ""
            if TENANT_PLACEHOLDER not in expected and issuer != expected:
                raise errors.provider_error(provider, "the authorization response comes from another issuer")
        if not code:
            raise errors.provider_error(provider, "the provider sent no authorization code")
        target = check_next(pending.next_url, base_url=self.settings.redirect_base_url,
                            allowed_origins=self.settings.allowed_redirect_origins)
        who = upstream.sign_in(code=code, code_verifier=pending.code_verifier,
                               redirect_uri=self.callback_url(provider), nonce=pending.nonce,
                               now=int(self.kernel.now().timestamp()))
        pair = self.accounts.sign_in(provider, who, request)
        return SignedIn(tokens=pair.to_dict(), next_url=target, cookie_name=cookie_name(state),
                        cookie_path=urlsplit(self.callback_url(provider)).path)
