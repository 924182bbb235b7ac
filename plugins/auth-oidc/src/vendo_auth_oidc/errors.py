"""The errors of the sign-in flow, each in Vendo's one JSON shape with a stable code.

- ``unknown_provider`` (404): no provider of that name is configured;
- ``invalid_redirect`` (400): ``next`` is not on an allowed origin;
- ``invalid_state`` (400): the callback's ``state`` is missing, unknown, expired, already
  used, or from another browser;
- ``provider_error`` (502): the provider answered ``error=...`` (``access_denied``
  included), or discovery, the token exchange or a profile call failed;
- ``invalid_id_token`` (502): the ID token failed validation (signature, ``iss``, ``aud``,
  ``exp``, ``nonce``...);
- ``email_required`` (400): a new account is needed but the provider shared no email address;
- ``email_unverified`` (409): the provider's email matches an account but the provider did
  not verify it.

Messages name the provider and the reason, never a secret, a token or a code.
"""

from __future__ import annotations

from typing import Any

from vendo import Conflict, InvalidInput, NotFound, VendoError


def unknown_provider(name: str) -> NotFound:
    """404: no provider named ``name``."""
    return NotFound(f"no sign-in provider named {name[:40]!r} is configured", code="unknown_provider")


def invalid_redirect(reason: str) -> InvalidInput:
    """400: ``next`` refused."""
    return InvalidInput(f"next is not an allowed redirect: {reason}", code="invalid_redirect", status_code=400)


def invalid_state(reason: str = "unknown, expired or already used") -> InvalidInput:
    """400: the callback does not match a sign-in started here."""
    return InvalidInput(f"sign-in state {reason}: start the sign-in again", code="invalid_state", status_code=400)


def provider_error(provider: str, message: str, **details: Any) -> VendoError:
    """502: the provider refused or failed; ``details`` carry e.g. the OAuth ``error`` code."""
    return VendoError(f"sign-in with {provider} failed: {message}", code="provider_error", status_code=502,
                      details={"provider": provider, **details})


def invalid_id_token(provider: str, reason: str) -> VendoError:
    """502: the ID token from the provider's token endpoint failed validation."""
    return VendoError(f"the ID token from {provider} was rejected: {reason}", code="invalid_id_token",
                      status_code=502, details={"provider": provider})


def email_required(provider: str) -> InvalidInput:
    """400: a new account needs an email address the provider did not share."""
    return InvalidInput(f"{provider} shared no email address, which a new account needs: "
                        "allow access to your email at the provider", code="email_required", status_code=400)


def email_unverified(provider: str) -> Conflict:
    """409: the email matches an account but is not verified by the provider (never linked)."""
    return Conflict(f"an account with this email exists, but {provider} does not say the address is verified: "
                    "sign in as before, or verify the address at the provider", code="email_unverified")
