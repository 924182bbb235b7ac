"""Error types of the kernel's public surface.

Every error a user can cause carries a stable, machine-readable ``code`` and an HTTP
status, so the HTTP app renders it as ``{"error": {"code", "message", "details"}}``
and the CLI prints it as one line.
"""

from __future__ import annotations

from typing import Any


class VendoError(Exception):
    """Base class of Vendo's errors: a message for people, a code for machines."""

    code: str = "vendo_error"
    status_code: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the body of an HTTP error response."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ConfigError(VendoError):
    """The configuration (``vendo.toml``, ``.env`` or ``VENDO_*`` variables) is invalid."""

    code = "config_error"


class StartupError(VendoError):
    """Start-up cannot continue. A plugin may raise it from ``vendo_startup`` to stop the
    kernel with a readable message."""

    code = "startup_error"
    status_code = 503


class DatabaseError(StartupError):
    """The database is unreachable, missing, or not at the migrations this install expects."""

    code = "database_unavailable"


class PluginError(VendoError):
    """A plugin could not be loaded or misbehaved while its hooks were called."""

    code = "plugin_error"


class DuplicateProviderError(PluginError):
    """Two plugins registered a provider with the same name in the same capability family."""

    code = "duplicate_provider"


class ProviderNotConfigured(VendoError):
    """No active provider of a capability family is available (none installed, or not chosen)."""

    code = "provider_not_configured"
    status_code = 503


class ProviderUnavailable(VendoError):
    """A provider's vendor (payment processor, AI API...) could not be reached or failed on its
    side: the request was not carried out, and retrying later may succeed (HTTP 502)."""

    code = "provider_unavailable"
    status_code = 502


class CounterStoreUnavailable(VendoError):
    """The counter store (Redis...) cannot be reached, or lost its data and waits for
    ``vendo usage rebuild``. Metered features failing closed answer 503 with this code;
    features failing open are allowed, their usage journalled and applied later.

    ``details["reason"]`` is ``"unreachable"`` or ``"lost"``.
    """

    code = "counter_store_unavailable"
    status_code = 503
    headers = {"Retry-After": "5"}


class NotFound(VendoError):
    """The requested resource does not exist (or is not visible to the caller)."""

    code = "not_found"
    status_code = 404


class Conflict(VendoError):
    """The request conflicts with the current state of a resource."""

    code = "conflict"
    status_code = 409


class InvalidInput(VendoError):
    """The request is well-formed but its values are not acceptable."""

    code = "invalid_input"
    status_code = 422


class Unauthorized(VendoError):
    """Missing, malformed or rejected credentials (answered with ``WWW-Authenticate: Bearer``)."""

    code = "unauthorized"
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(VendoError):
    """The caller is known but may not do this."""

    code = "forbidden"
    status_code = 403


class InvalidSignature(VendoError):
    """A signed payload (webhook, license key) failed verification: bad, missing or stale."""

    code = "invalid_signature"
    status_code = 400


class UpstreamError(VendoError):
    """A vendor behind a provider (an AI API...) failed, timed out or could not be reached.
    Nothing was consumed: the caller may retry."""

    code = "upstream_error"
    status_code = 502
