"""Errors of the password plugin that the kernel has no class for (410 and 429).

Both render in Vendo's one JSON error shape; a 429 also carries ``Retry-After``.
"""

from __future__ import annotations

import math
from typing import Any

from vendo import VendoError


class Gone(VendoError):
    """A single-use token that expired or was already used (410)."""

    code = "gone"
    status_code = 410


class TooManyAttempts(VendoError):
    """Throttled: an account locked after failed sign-ins, or too many attempts from one
    address (429, with ``Retry-After`` in seconds and in ``details.retry_after``)."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, code: str, retry_after: float, details: dict[str, Any] | None = None) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(message, code=code, details={**(details or {}), "retry_after": seconds})
        self.retry_after = seconds
        self.headers = {"Retry-After": str(seconds)}
