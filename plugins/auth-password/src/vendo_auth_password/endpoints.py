"""HTTP routes under ``/api/v1/auth`` (sign-out, refresh and ``/me`` are the kernel's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from vendo import Forbidden, Principal, current_principal

from vendo_auth_password.schemas import (
    Accepted,
    ChangePasswordBody,
    ForgotPasswordBody,
    LoginBody,
    RecoveryCodes,
    RegisterBody,
    ResetPasswordBody,
    TokenPair,
    TotpDisableBody,
    TotpEnableBody,
    TotpSetup,
    VerificationRequested,
    VerifyEmailBody,
)

if TYPE_CHECKING:  # pragma: no cover
    from vendo_auth_password.service import PasswordAuth

FORGOT_MESSAGE = "if an account uses this address, a link to reset its password is on its way"


def signed_in_user(principal: Principal = Depends(current_principal)) -> str:
    """The signed-in user's id; credentials bound to a workspace or limited in scope
    (API keys) cannot manage a password or 2FA (403 ``user_required``)."""
    if principal.workspace is not None or "*" not in principal.scopes:
        raise Forbidden("this needs a signed-in user, not an API key", code="user_required")
    return principal.subject


def build_router(service: PasswordAuth) -> APIRouter:
    """The plugin's routes, bound to its service."""
    router = APIRouter(prefix="/auth", tags=["auth-password"])

    @router.post("/register", status_code=201, response_model=TokenPair,
                 summary="Create an account with email and password, and sign in")
    def register(body: RegisterBody, request: Request) -> dict[str, Any]:
        return service.register(body.email, body.password, body.name, request=request)

    @router.post("/login", response_model=TokenPair, summary="Sign in with email and password (and a 2FA code)")
    def login(body: LoginBody, request: Request) -> dict[str, Any]:
        return service.login(body.email, body.password, totp_code=body.totp_code, recovery_code=body.recovery_code,
                             request=request)

    @router.post("/password/change", response_model=TokenPair,
                 summary="Change my password; my other sessions end, a new token pair is returned")
    def change_password(body: ChangePasswordBody, request: Request,
                        user_id: str = Depends(signed_in_user)) -> dict[str, Any]:
        return service.change_password(user_id, body.current_password, body.new_password, request=request)

    @router.post("/password/forgot", status_code=202, response_model=Accepted,
                 summary="Email a password-reset link (the same answer whether the account exists)")
    def forgot_password(body: ForgotPasswordBody, request: Request) -> dict[str, Any]:
        service.forgot_password(body.email, request=request)
        return {"status": "accepted", "message": FORGOT_MESSAGE}

    @router.post("/password/reset", status_code=204, response_class=Response,
                 summary="Set a new password with a reset token; every session ends")
    def reset_password(body: ResetPasswordBody, request: Request) -> Response:
        service.reset_password(body.token, body.password, request=request)
        return Response(status_code=204)

    @router.post("/email/verify/request", status_code=202, response_model=VerificationRequested,
                 summary="Email me a verification link")
    def request_verification(request: Request, user_id: str = Depends(signed_in_user)) -> dict[str, Any]:
        return service.request_verification(user_id, request=request)

    @router.post("/email/verify", status_code=204, response_class=Response,
                 summary="Verify an email address with its token")
    def verify_email(body: VerifyEmailBody, request: Request) -> Response:
        service.verify_email(body.token, request=request)
        return Response(status_code=204)

    @router.post("/2fa/setup", response_model=TotpSetup,
                 summary="Start two-factor authentication: a TOTP secret and its otpauth URI, shown once")
    def totp_setup(request: Request, user_id: str = Depends(signed_in_user)) -> dict[str, Any]:
        return service.totp_setup(user_id, request=request)

    @router.post("/2fa/enable", response_model=RecoveryCodes,
                 summary="Turn two-factor authentication on with a code; returns recovery codes, shown once")
    def totp_enable(body: TotpEnableBody, request: Request, user_id: str = Depends(signed_in_user)) -> dict[str, Any]:
        return service.totp_enable(user_id, body.code, request=request)

    @router.post("/2fa/disable", status_code=204, response_class=Response,
                 summary="Turn two-factor authentication off (password and a code)")
    def totp_disable(body: TotpDisableBody, request: Request, user_id: str = Depends(signed_in_user)) -> Response:
        service.totp_disable(user_id, body.password, body.code, request=request)
        return Response(status_code=204)

    return router
