"""Request and response bodies of the routes (unknown fields are refused with 422)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

#: Long enough for any passphrase, short enough that hashing it is never a denial of service.
PASSWORD = Field(..., min_length=1, max_length=1024)
EMAIL = Field(..., min_length=1, max_length=320)
TOKEN = Field(..., min_length=1, max_length=512)
CODE = Field(..., min_length=1, max_length=64)


class _Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class RegisterBody(_Body):
    """``POST /auth/register``."""

    email: str = EMAIL
    password: str = PASSWORD
    name: str = Field("", max_length=200)


class LoginBody(_Body):
    """``POST /auth/login``: ``totp_code`` or ``recovery_code`` when the account has 2FA."""

    email: str = EMAIL
    password: str = PASSWORD
    totp_code: Optional[str] = Field(None, max_length=16, description="The current code of the authenticator app.")
    recovery_code: Optional[str] = Field(None, max_length=64, description="A recovery code, instead of totp_code.")


class ChangePasswordBody(_Body):
    """``POST /auth/password/change``."""

    current_password: str = PASSWORD
    new_password: str = PASSWORD


class ForgotPasswordBody(_Body):
    """``POST /auth/password/forgot``."""

    email: str = EMAIL


class ResetPasswordBody(_Body):
    """``POST /auth/password/reset``: the token from the reset email and the new password."""

    token: str = TOKEN
    password: str = PASSWORD


class VerifyEmailBody(_Body):
    """``POST /auth/email/verify``: the token from the verification email."""

    token: str = TOKEN


class TotpEnableBody(_Body):
    """``POST /auth/2fa/enable``: the current code of the authenticator app."""

    code: str = CODE


class TotpDisableBody(_Body):
    """``POST /auth/2fa/disable``."""

    password: str = PASSWORD
    code: str = Field(..., min_length=1, max_length=64, description="A current TOTP code or a recovery code.")


class TokenPair(BaseModel):
    """A sign-in answer (the kernel's token pair)."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class Accepted(BaseModel):
    """``POST /auth/password/forgot``'s answer, the same whether the account exists or not."""

    status: str = "accepted"
    message: str


class VerificationRequested(BaseModel):
    """Where the verification email goes, and until when its link works."""

    email: str
    expires_at: str


class TotpSetup(BaseModel):
    """A new TOTP seed, shown once: ``otpauth_uri`` is what QR codes encode."""

    secret: str
    otpauth_uri: str
    issuer: str
    digits: int
    period: int


class RecoveryCodes(BaseModel):
    """Single-use recovery codes, shown once."""

    recovery_codes: list[str]
