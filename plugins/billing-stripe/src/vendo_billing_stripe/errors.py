"""Stripe SDK exceptions as Vendo errors (the SDK is imported only when one is translated)."""

from __future__ import annotations

from vendo import Conflict, InvalidInput, NotFound, ProviderNotConfigured, ProviderUnavailable, VendoError


def translate(exc: Exception, what: str) -> VendoError:
    """The Vendo error a caller can act on for a Stripe SDK exception raised while doing ``what``.

    Network failures, Stripe's 5xx and rate limiting are ``provider_unavailable`` (502): nothing
    was done and a retry may succeed. A rejected API key is ``provider_not_configured``. Unknown
    objects are ``not_found`` (404); other rejected requests are ``invalid_input`` (422) with
    Stripe's error code and parameter in ``details``.
    """
    import stripe

    details = {"provider": "stripe", "operation": what}
    stripe_code = getattr(exc, "code", None)
    if stripe_code:
        details["stripe_code"] = stripe_code
    param = getattr(getattr(exc, "error", None), "param", None)
    if param:
        details["param"] = param
    message = getattr(exc, "user_message", None) or str(getattr(exc, "_message", None) or exc)
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderUnavailable(f"Stripe is unreachable ({what})", details={**details, "reason": "unreachable"})
    if isinstance(exc, stripe.RateLimitError):
        return ProviderUnavailable(f"Stripe is rate limiting requests ({what})",
                                   details={**details, "reason": "rate_limited"})
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return ProviderNotConfigured(f"Stripe rejected the API key ({what}): set [billing-stripe] api_key",
                                     code="provider_misconfigured", details=details)
    if isinstance(exc, stripe.IdempotencyError):
        return Conflict(f"Stripe refused a reused idempotency key with different parameters ({what})",
                        code="idempotency_conflict", details=details)
    if isinstance(exc, stripe.CardError):
        return InvalidInput(f"Stripe declined the payment: {message}", code="payment_declined", details=details)
    status = getattr(exc, "http_status", None)
    if status == 404 or stripe_code == "resource_missing":
        return NotFound(f"Stripe has no such object ({what}): {message}", details=details)
    if status is None or status >= 500 or not isinstance(exc, stripe.StripeError):
        return ProviderUnavailable(f"Stripe failed to answer ({what}): {message}",
                                   details={**details, "reason": "vendor_error", "http_status": status})
    return InvalidInput(f"Stripe rejected the request ({what}): {message}", code="stripe_invalid_request",
                        details={**details, "http_status": status})
