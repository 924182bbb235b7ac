"""Billing in the kernel (``kernel.billing``): webhook ingestion, the subscription state
machine driven by normalized :class:`vendo.BillingEvent`\\ s, and the owner's billing actions
(checkout, portal, change plan, cancel, resume, invoices) through the active provider."""

from vendo.billing.service import Billing, EventFailed

__all__ = ["Billing", "EventFailed"]
