"""The plugin's settings: ``[auth-password]`` in vendo.toml, or ``VENDO_AUTH_PASSWORD__<FIELD>``."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator, model_validator
from vendo import PluginSettings


class PasswordSettings(PluginSettings):
    """Every knob of password sign-in; the defaults suit production.

    Durations are in seconds, like the kernel's ``[sessions]`` settings. The ``argon2_*``
    fields default to argon2-cffi's ``PasswordHasher`` defaults (RFC 9106's low-memory
    profile); set them only to make hashing cheaper in tests or stronger on big machines.
    Stored hashes made with other parameters are upgraded at the next successful sign-in.
    """

    registration_enabled: bool = Field(True, description="Allow POST /auth/register (else 403 registration_closed).")
    send_verification_on_register: bool = Field(
        True, description="Email a verification link when an account is registered.")
    reset_url: str = Field(
        "{public_url}/reset-password?token={token}",
        description="The link of password-reset emails: a page of your app posting the token and the new password "
                    "to POST /api/v1/auth/password/reset ({public_url}: the kernel's public_url).")
    verify_email_url: str = Field(
        "{public_url}/verify-email?token={token}",
        description="The link of verification emails: a page of your app posting the token to "
                    "POST /api/v1/auth/email/verify.")
    min_length: int = Field(10, ge=8, le=128, description="Shortest password accepted.")
    lockout_threshold: int = Field(5, ge=1, le=1000, description="Consecutive failed sign-ins that lock an account.")
    lockout_duration: int = Field(900, ge=1, le=7 * 86_400, description="How long a lock lasts, seconds.")
    ip_max_failures: int = Field(
        30, ge=1, description="Failed sign-ins and invalid tokens accepted from one IP address per ip_window.")
    ip_max_reset_requests: int = Field(
        10, ge=1, description="Password-reset requests accepted from one IP address per ip_window.")
    ip_max_registrations: int = Field(
        20, ge=1, description="Accounts registered from one IP address per ip_window.")
    ip_window: int = Field(900, ge=1, le=7 * 86_400, description="The per-IP throttle's sliding window, seconds.")
    reset_token_ttl: int = Field(3600, ge=60, le=7 * 86_400, description="Password-reset token lifetime, seconds.")
    verify_token_ttl: int = Field(
        2 * 86_400, ge=60, le=30 * 86_400, description="Email-verification token lifetime, seconds.")
    token_request_interval: int = Field(
        60, ge=0, le=86_400, description="Least time between two reset or verification emails to one account.")
    totp_issuer: str = Field("Vendo", min_length=1, max_length=100,
                             description="The issuer shown by authenticator apps.")
    totp_window: int = Field(1, ge=0, le=3, description="30-second TOTP steps accepted either side of now.")
    recovery_codes: int = Field(10, ge=5, le=20, description="Recovery codes issued when 2FA is enabled.")
    basic_auth: bool = Field(
        False, description="Register the `password` authenticator (HTTP Basic email:password on every request).")
    argon2_time_cost: Optional[int] = Field(None, ge=1, le=100,
                                            description="argon2 iterations (default: argon2-cffi's).")
    argon2_memory_cost: Optional[int] = Field(None, ge=8, description="argon2 memory, KiB (default: argon2-cffi's).")
    argon2_parallelism: Optional[int] = Field(None, ge=1, le=64, description="argon2 lanes (default: argon2-cffi's).")

    @field_validator("reset_url", "verify_email_url")
    @classmethod
    def _link(cls, value: str) -> str:
        from vendo import check_link_template

        return check_link_template(value, "token")

    @model_validator(mode="after")
    def _argon2_memory_fits_lanes(self) -> "PasswordSettings":
        from argon2 import PasswordHasher

        lanes = self.argon2_parallelism or PasswordHasher().parallelism
        if self.argon2_memory_cost is not None and self.argon2_memory_cost < 8 * lanes:
            raise ValueError(f"argon2_memory_cost must be at least 8 KiB per lane ({8 * lanes} for {lanes} lanes)")
        return self
