"""vendo-billing-stripe: Vendo's billing provider on Stripe (the official ``stripe`` SDK).

Choose it in ``vendo.toml``::

    [providers]
    billing = "stripe"

    [billing-stripe]
    api_key = "sk_test_..."          # or VENDO_BILLING_STRIPE__API_KEY
    webhook_secret = "whsec_..."     # or VENDO_BILLING_STRIPE__WEBHOOK_SECRET

The provider (:class:`~vendo_billing_stripe.provider.StripeBillingProvider`) is registered as
``stripe`` when it is the chosen billing provider or when an API key is set; importing this
module does not import the SDK.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from vendo import PluginSettings, hookimpl

vendo_api = ">=1.0,<2"

NAME = "stripe"
STRIPE_API = "https://api.stripe.com"


class Settings(PluginSettings):
    """``[billing-stripe]`` in vendo.toml, or ``VENDO_BILLING_STRIPE__<FIELD>``."""

    api_key: SecretStr | None = Field(None, description="Secret API key (sk_test_... or sk_live_..., or a "
                                                        "restricted rk_... key).")
    webhook_secret: SecretStr | None = Field(None, description="Signing secret of the webhook endpoint "
                                                               "(whsec_...; `stripe listen` prints one).")
    api_base: str = Field(STRIPE_API, description="Base URL of the Stripe API (change only for a test server).")
    meter_events_base: str | None = Field(None, description="Base URL of the meter events API "
                                                            "(default: api_base).")
    webhook_tolerance: int = Field(300, ge=1, description="Seconds a webhook's signed timestamp may be away "
                                                          "from now (Stripe's standard: 300).")
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for Stripe before the call fails with "
                                                   "provider_unavailable.")
    max_network_retries: int = Field(2, ge=0, description="Retries of a failed network call (each with the "
                                                          "same idempotency key).")
    automatic_tax: bool = Field(False, description="Let Stripe Tax compute taxes in Checkout (needs Stripe Tax "
                                                   "set up in the dashboard).")
    allow_promotion_codes: bool = Field(False, description="Show the promotion code field in Checkout.")
    trial_requires_card: bool = Field(False, description="Ask for a card when a checkout starts a trial. Default "
                                                         "false, a trial without card (seed 003): Checkout asks for "
                                                         "no payment method and the subscription is canceled at the "
                                                         "end of the trial unless one was added.")
    proration_behavior: Literal["create_prorations", "always_invoice"] = Field(
        "create_prorations", description="How immediate plan and seat changes are prorated: on the next invoice, "
                                         "or invoiced at once.")
    product_id_prefix: str = Field("vendo_", min_length=1, description="Stripe Product id of a plan = this "
                                                                       "prefix + the plan id.")
    meter_event_prefix: str = Field("vendo_", description="Billing Meter event name of a metered feature = this "
                                                          "prefix + the feature id.")
    portal_configuration: str | None = Field(None, description="Customer Portal configuration id (bpc_...); "
                                                               "default: the account's default one.")
    invoice_limit: int = Field(100, ge=1, le=100, description="Invoices listed per customer (newest first).")


@hookimpl
def vendo_settings_model() -> type[Settings]:
    """Declare ``[billing-stripe]``."""
    return Settings


def _chosen(kernel: Any) -> bool:
    choice = kernel.settings.providers.get("billing")
    return choice == NAME or (isinstance(choice, list) and NAME in choice)


@hookimpl
def vendo_register_billing_providers(register: Any, kernel: Any, settings: Settings) -> None:
    """The ``stripe`` billing provider, when chosen (``[providers] billing = "stripe"``) or
    when an API key is configured. Chosen without a key, every call answers
    ``provider_not_configured``."""
    if not _chosen(kernel) and settings.api_key is None:
        return
    from vendo_billing_stripe.provider import StripeBillingProvider

    register(NAME, StripeBillingProvider(settings, clock=kernel.now))
