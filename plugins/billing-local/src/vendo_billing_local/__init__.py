"""vendo-billing-local: a billing provider that takes no payment.

For self-hosters and for trying Vendo without any key: a local hosted-checkout page whose
Pay button completes at once, a local portal page (cancel, resume), manual assignment by an
administrator (``vendo billing assign``), invoices recorded in the plugin's tables, and
``vendo billing-local renew`` to roll periods over. It registers the billing provider
``local``, which the kernel chooses when no other billing provider is configured.

Importing this module is cheap: the hooks import the rest when the kernel calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from vendo import PluginSettings, hookimpl

vendo_api = ">=1.0,<2"

#: The plugin's name (entry point, settings table ``[billing-local]``).
PLUGIN_NAME = "billing-local"
#: The provider's name in the ``billing`` family.
PROVIDER_NAME = "local"


class LocalSettings(PluginSettings):
    """``[billing-local]`` settings."""

    public_url: str = Field("", description="Base URL of the server in checkout/portal links "
                                            "(default: http://<server.host>:<server.port>).")
    tolerance_seconds: int = Field(300, ge=1, le=86_400,
                                   description="How old a signed webhook may be before it is refused.")
    renew_interval: float = Field(300.0, ge=0, description="Seconds between renewal passes inside `vendo serve` "
                                                           "(0: only `vendo billing-local renew`).")



def provider_of(kernel: Any) -> Any:
    """The ``local`` provider registered on ``kernel``."""
    return kernel.billing.provider(PROVIDER_NAME)[1]


@hookimpl
def vendo_settings_model() -> type[LocalSettings]:
    """Declare ``[billing-local]``."""
    return LocalSettings


@hookimpl
def vendo_migrations() -> str:
    """The plugin's Alembic branch ``billing-local`` (depends on ``vendo_0002``)."""
    return str(Path(__file__).parent / "migrations")


@hookimpl
def vendo_register_billing_providers(register: Any, kernel: Any, settings: LocalSettings) -> None:
    """Register the ``local`` billing provider."""
    from vendo_billing_local.provider import LocalBillingProvider

    register(PROVIDER_NAME, LocalBillingProvider(kernel, settings))


@hookimpl
def vendo_register_routes(register: Any, kernel: Any) -> None:
    """Mount the local checkout and portal pages under ``/api/v1/billing/local``."""
    from vendo_billing_local.routes import build_router

    register(build_router(kernel))


@hookimpl
async def vendo_startup(kernel: Any, settings: LocalSettings) -> None:
    """While serving with ``local`` as the active billing provider, renew due subscriptions
    every ``renew_interval`` seconds (cancellations at period end, ended trials, renewals)."""
    import asyncio

    provider = provider_of(kernel)
    if settings.renew_interval <= 0 or kernel.providers.get("billing") is not provider:
        return
    provider.renewer = asyncio.create_task(_renew_forever(provider, settings.renew_interval))


async def _renew_forever(provider: Any, interval: float) -> None:
    import asyncio
    import logging

    log = logging.getLogger("vendo.billing.local")
    while True:
        await asyncio.sleep(interval)
        try:
            moved = await provider.renew()
            if moved:
                log.info("local billing: %d subscription(s) renewed, canceled or expired", moved)
        except Exception:  # noqa: BLE001 - the next pass tries again; the events keep their state
            log.exception("local billing renewal pass failed")


@hookimpl
async def vendo_shutdown(kernel: Any) -> None:
    """Stop the renewal task."""
    import asyncio

    task = getattr(provider_of(kernel), "renewer", None)
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        provider_of(kernel).renewer = None


@hookimpl
def vendo_register_commands(register: Any) -> None:
    """Add ``vendo billing-local renew``."""
    from vendo_billing_local.commands import app

    register(app, name="billing-local")
