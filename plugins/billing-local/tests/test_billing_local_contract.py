"""The SDK's billing contract suite against the ``local`` provider (SQLite and PostgreSQL),
plus what the suite does not cover: stale signatures, usage reports, catalog sync."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

import vendo_billing_local
from vendo_sdk.contracts import BillingProviderContract

from vendo import BillingEvent, CatalogPrice, InvalidSignature, NotFound, UsageReport


def load_memento(kernel: Any) -> None:
    from pathlib import Path

    from vendo.entitlements.catalog import load_catalog

    kernel.entitlements.load_catalog(load_catalog(
        Path(__file__).resolve().parents[3] / "examples" / "catalogs" / "memento.toml"))


class TestLocalBillingContract(BillingProviderContract):
    plugin = vendo_billing_local
    plugin_name = "billing-local"
    provider_name = "local"
    kernel_settings = {"secret_key": "billing-local-contract-secret-0123456789"}

    @pytest.fixture
    def kernel(self, vendo_kernel: Any) -> Any:
        kernel = vendo_kernel({self.plugin_name: self.plugin}, **dict(self.kernel_settings))
        load_memento(kernel)
        return kernel

    def signed_webhook(self, provider: Any) -> tuple[dict[str, str], bytes]:
        from vendo.billing.machine import event_to_json

        event = BillingEvent(id="levt_contract", type="invoice.paid", occurred_at=datetime.now(timezone.utc),
                             subject="ws_contract", invoice_id="linv_1", amount=990, currency="eur")
        body = json.dumps({"events": [event_to_json(event)]}).encode()
        return provider.sign(body), body

    def checkout_completed_webhook(self, provider: Any, session: Any, request: Any) -> tuple[dict[str, str], bytes]:
        return provider.checkout_delivery(session.id)

    async def subscription_id(self, provider: Any) -> str:
        """A new subscription per call: a checkout opened for a new subject, completed."""
        from vendo import CheckoutRequest

        self.subjects = getattr(self, "subjects", 0) + 1
        subject = f"ws_contract_{self.subjects}"
        request = CheckoutRequest(subject=subject, plan=self.plan, price_key=self.price_key(self.plan),
                                  success_url="https://app.test/ok", cancel_url="https://app.test/cancel",
                                  idempotency_key=f"chk-{subject}")
        checkout = await provider.create_checkout(request)
        return (await provider.complete_checkout(checkout.id)).subscription_id

    def test_stale_webhook_is_rejected(self, provider: Any) -> None:
        headers, body = self.signed_webhook(provider)
        stale = provider.sign(body, int(provider._kernel.now().timestamp()) - 301)
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(stale, body)
        assert provider.parse_webhook(headers, body)[0].invoice_id == "linv_1"

    @pytest.mark.asyncio
    async def test_usage_is_recorded_once_per_key(self, provider: Any, kernel: Any) -> None:
        from sqlalchemy import func, select

        from vendo_billing_local.models import LocalUsage

        subscription = await self.subscription_id(provider)
        report = UsageReport(subscription_id=subscription, feature="chat", quantity=3,
                             timestamp=kernel.now(), idempotency_key="u-1")
        await provider.report_usage(report)
        await provider.report_usage(report)
        with kernel.session() as session:
            assert session.scalar(select(func.sum(LocalUsage.quantity))) == 3
        with pytest.raises(NotFound):
            await provider.report_usage(UsageReport(subscription_id="lsub_nope", feature="chat", quantity=1,
                                                    timestamp=kernel.now(), idempotency_key="u-2"))

    @pytest.mark.asyncio
    async def test_catalog_sync_is_stable(self, provider: Any) -> None:
        price = CatalogPrice(lookup_key="vendo:pro:v1:month:eur", plan="pro", plan_name="Pro", plan_version=1,
                             interval="month", currency="eur", unit_amount=990)
        first = await provider.sync_catalog([price])
        assert first == await provider.sync_catalog([price]) and first["vendo:pro:v1:month:eur"].startswith("lprice_")
