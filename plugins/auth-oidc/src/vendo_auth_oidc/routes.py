"""HTTP routes, under ``/api/v1/auth/oidc``.

- ``GET /providers``: the configured providers (name, kind, label, login URL).
- ``GET /{provider}/login?next=...``: 302 to the provider's authorization endpoint.
- ``GET /{provider}/callback?code&state``: the kernel's token pair as JSON, or a 302 to
  ``next`` with the tokens in the URL fragment.

Responses carrying tokens are marked ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from vendo_auth_oidc.redirects import with_fragment
from vendo_auth_oidc.service import ROUTE_PREFIX, OidcService

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "no-referrer"}


def build_router(service: OidcService) -> APIRouter:
    """The plugin's routes bound to ``service``."""
    router = APIRouter(prefix=ROUTE_PREFIX, tags=["auth-oidc"])

    @router.get("/providers", summary="Identity providers you can sign in with")
    def providers() -> dict[str, Any]:
        return {"data": service.providers()}

    @router.get(
        "/{provider}/login", status_code=302, response_class=RedirectResponse,
        summary="Start signing in with a provider (302 to it)",
        responses={302: {"description": "to the provider's authorization endpoint"}},
    )
    def login(
        provider: str,
        next: Optional[str] = Query(None, max_length=2048,  # noqa: A002 - the parameter's public name
                                    description="Where to take the browser afterwards (an allowed origin); "
                                                "the tokens travel in the URL fragment."),
    ) -> RedirectResponse:
        redirect = service.start(provider, next)
        response = RedirectResponse(redirect.url, status_code=302, headers=NO_STORE)
        if redirect.cookie_name and redirect.cookie_value:
            response.set_cookie(redirect.cookie_name, redirect.cookie_value, max_age=redirect.max_age,
                                path=redirect.cookie_path, secure=redirect.cookie_secure, httponly=True,
                                samesite="lax")
        return response

    @router.get(
        "/{provider}/callback", summary="Where the provider sends the browser back: finish signing in",
        responses={200: {"description": "the token pair (access_token, refresh_token, token_type, expires_in)"},
                   302: {"description": "to next, with the token pair in the URL fragment"}},
    )
    def callback(
        provider: str,
        request: Request,
        code: Optional[str] = Query(None, max_length=4096),
        state: Optional[str] = Query(None, max_length=512),
        error: Optional[str] = Query(None, max_length=256),
        error_description: Optional[str] = Query(None, max_length=2048),
        iss: Optional[str] = Query(None, max_length=2048),
    ) -> Any:
        done = service.finish(provider, state=state, code=code, error=error, error_description=error_description,
                              issuer=iss, cookies=dict(request.cookies), request=request)
        response: Any
        if done.next_url:
            response = RedirectResponse(with_fragment(done.next_url, done.tokens), status_code=302, headers=NO_STORE)
        else:
            response = JSONResponse(done.tokens, headers=NO_STORE)
        response.delete_cookie(done.cookie_name, path=done.cookie_path)
        return response

    return router
