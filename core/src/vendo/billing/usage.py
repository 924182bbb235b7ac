"""Usage-based billing: the counted usage of metered features pushed to billing providers.

A plan price with ``metered_feature`` bills each unit of that feature its subscriber used.
:class:`UsageReporter` (``kernel.billing.report_usage``, run every ``[billing]
usage_report_interval`` seconds by ``vendo serve`` and by ``vendo billing report-usage``)
keeps one row per subscription and feature (``vendo_billing_usage_reports``):

* ``counted_since``: usage recorded from this moment on is billed: the later of the moment
  the subscription started billing its current plan (``Subscription.billed_since``: a paid
  status entered or the plan changed, so a trial's usage is waived) and the catalog version's
  load; when the subscription starts billing again (a new plan) the count restarts there;
* ``billed_units``: how much of it the provider has accepted.

Each run sums the ledger (consume, track, commit and refund entries of the subject and feature
since ``counted_since``), and reports the difference with ``billed_units`` in three steps: the
batch (units and a deterministic idempotency key) is written first, the provider is called with
no transaction open, and ``billed_units`` moves only once the provider accepted it. A crash or
an unreachable provider leaves the batch pending: the next run sends the same units, timestamp
and key, so the provider counts them once. Refunds lower the sum; units already billed are
never reported negative (later usage makes up for them first).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendo.billing.machine import BILLED_STATUSES
from vendo.billing.models import Subscription, UsageReportState
from vendo.capabilities import UsageReport
from vendo.entitlements.models import Assignment, CatalogVersion, LedgerEntry
from vendo.errors import NotFound, VendoError

if TYPE_CHECKING:  # pragma: no cover
    from vendo.entitlements.catalog import Catalog, Price
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.billing")

#: Ledger kinds that count as usage (refunds are negative amounts).
USAGE_KINDS = ("consume", "track", "refund", "commit")


def usage_lookup_key(price_key: str, feature: str) -> str:
    """The lookup key of a usage-based price: its plan price's key plus ``:usage:<feature>``."""
    return f"{price_key}:usage:{feature}"


def report_key(provider: str, subscription_id: str, feature: str, since: datetime, start: int, end: int) -> str:
    """The idempotency key of the batch of units ``start`` (exclusive) to ``end`` (inclusive)
    counted since ``since``: the same batch always has the same key, and a count restarted
    later never reuses one (≤ 100 characters, Stripe's limit for meter events)."""
    parts = (provider, subscription_id, feature, since.isoformat(), str(start), str(end))
    digest = hashlib.sha256("\x1f".join(parts).encode())
    return f"vendo-usage-{digest.hexdigest()[:48]}"


@dataclass(frozen=True)
class UsageBatch:
    """Units of one subscription's feature waiting to be reported (or being reported)."""

    provider: str
    subscription_id: str
    customer_id: str | None
    subject: str
    feature: str
    price_key: str
    units: int
    idempotency_key: str
    timestamp: datetime


class UsageReporter:
    """Reports the billed usage of every subscription on a usage-based price (see the module)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    async def run(self, *, subject: str | None = None) -> list[dict[str, Any]]:
        """Report what is due now (of ``subject`` only, when given). Returns one result per
        subscription and feature with something to report: ``{"subscription_id", "feature",
        "units", "status": "reported" | "failed", "error"?}``. A provider failure is recorded
        on the row (``last_error``) and retried by the next run; it never raises."""
        now = self._kernel.now()
        batches = await asyncio.to_thread(self._due, now, subject)
        results = []
        for batch in batches:
            result: dict[str, Any] = {"provider": batch.provider, "subscription_id": batch.subscription_id,
                                      "subject": batch.subject, "feature": batch.feature, "units": batch.units}
            try:
                billing = self._kernel.billing
                _name, provider = billing.provider(batch.provider)
                await billing._call(batch.provider, "report usage", lambda batch=batch: (
                    provider.report_usage(UsageReport(
                        subscription_id=batch.subscription_id, feature=batch.feature, quantity=batch.units,
                        timestamp=batch.timestamp, idempotency_key=batch.idempotency_key,
                        customer_id=batch.customer_id,
                        price_key=batch.price_key))))
            except VendoError as exc:
                await asyncio.to_thread(self._failed, batch, exc.message)
                log.warning("usage report of %s %s (%d units) failed: %s", batch.subscription_id, batch.feature,
                            batch.units, exc.message)
                results.append({**result, "status": "failed", "error": exc.message})
                continue
            await asyncio.to_thread(self._accepted, batch, now)
            results.append({**result, "status": "reported"})
        return results

    # -- the batches ----------------------------------------------------------------------------

    def _due(self, now: datetime, subject: str | None) -> list[UsageBatch]:
        """Cut (or take up again) the batches due now. Only subscriptions on a plan with a
        usage-based price in the current catalog, or with a usage row already, are looked at."""
        with self._kernel.session(read_only=True) as session:
            try:
                catalog = self._kernel.entitlements.catalog(None, session)
            except NotFound:  # no catalog loaded: no price to bill by
                return []
            metered = [plan.id for plan in catalog.plans.values() if any(price.metered for price in plan.prices)]
            reported = select(UsageReportState.subscription_id)
            query = select(Subscription).where(Subscription.status.in_(BILLED_STATUSES),
                                               Subscription.plan.in_(metered) | Subscription.subscription_id.in_(reported))
            if subject is not None:
                query = query.where(Subscription.subject == subject)
            subscriptions = list(session.scalars(query.order_by(Subscription.subject, Subscription.subscription_id)))
        batches = []
        for sub in subscriptions:
            try:
                batches += self._batches_of(sub, now)
            except IntegrityError:  # another process created the same row meanwhile: its run reports it
                continue
        return batches

    def _terms(self, session: Session, sub: Subscription) -> tuple[Catalog, int, datetime]:
        """The catalog the subscriber's terms come from, its version and when it was loaded."""
        entitlements = self._kernel.entitlements
        assignment = session.get(Assignment, sub.subject)
        version = assignment.catalog_version if assignment is not None and assignment.plan_id == sub.plan else \
            entitlements.current_version(session)
        loaded = session.scalar(select(CatalogVersion.created_at).where(CatalogVersion.version == version))
        return entitlements.catalog(version, session), version, loaded or sub.created_at

    def _batches_of(self, sub: Subscription, now: datetime) -> list[UsageBatch]:
        """The pending batch of each usage-based price of ``sub`` (written now when new)."""
        from vendo.billing.service import lookup_key

        with self._kernel.session(read_only=True) as session:  # most subscriptions have nothing to bill
            try:
                catalog, version, loaded = self._terms(session, sub)
                plan = catalog.plan(sub.plan)
            except NotFound:  # no catalog, or a plan since removed: nothing to bill by
                return []
            interval, currency = sub.interval or "month", (sub.currency or catalog.currency).lower()
            prices: dict[str, Price] = {p.metered_feature or "": p for p in plan.usage_prices(interval, currency)}
            if not prices and session.scalar(select(UsageReportState.feature).where(
                    UsageReportState.provider == sub.provider, UsageReportState.subscription_id == sub.subscription_id,
                    UsageReportState.pending_key.is_not(None)).limit(1)) is None:
                return []
        batches = []
        with self._kernel.session() as session:
            states = {s.feature: s for s in session.scalars(select(UsageReportState).where(
                UsageReportState.provider == sub.provider,
                UsageReportState.subscription_id == sub.subscription_id).with_for_update())}
            start = max(sub.billed_since or sub.created_at, loaded)
            # a batch still pending is sent again even when the plan no longer bills its feature
            for feature in sorted(set(prices) | {f for f, state in states.items() if state.pending_key}):
                state = states.get(feature)
                if state is not None and state.pending_key is None and state.counted_since < start:
                    # the subscription bills anew (another plan since): the count restarts
                    state.counted_since, state.billed_units, state.updated_at = start, 0, now
                if state is None:
                    state = UsageReportState(provider=sub.provider, subscription_id=sub.subscription_id,
                                             feature=feature, subject=sub.subject, counted_since=start,
                                             billed_units=0, attempts=0, updated_at=now)
                    session.add(state)
                    session.flush()
                price_key = usage_lookup_key(lookup_key(sub.plan, version, interval, currency), feature)
                if state.pending_key is None:
                    used = self._used(session, sub.subject, feature, state.counted_since, now)
                    due = used - state.billed_units
                    if due <= 0:
                        continue
                    state.pending_key = report_key(sub.provider, sub.subscription_id, feature, state.counted_since,
                                                   state.billed_units, used)
                    state.pending_units, state.pending_price_key, state.pending_at = due, price_key, now
                    state.updated_at = now
                batches.append(UsageBatch(
                    provider=sub.provider, subscription_id=sub.subscription_id, customer_id=sub.customer_id,
                    subject=sub.subject, feature=feature, price_key=state.pending_price_key or price_key,
                    units=int(state.pending_units or 0), idempotency_key=state.pending_key,
                    timestamp=state.pending_at or now))
        return batches

    @staticmethod
    def _used(session: Session, subject: str, feature: str, since: datetime, until: datetime) -> int:
        """The usage the ledger holds for ``subject``'s ``feature`` in ``[since, until)``."""
        total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.subject == subject, LedgerEntry.feature == feature, LedgerEntry.kind.in_(USAGE_KINDS),
            LedgerEntry.created_at >= since, LedgerEntry.created_at < until))
        return int(total or 0)

    # -- after the provider answered ------------------------------------------------------------

    def _state(self, session: Session, batch: UsageBatch) -> UsageReportState | None:
        state = session.scalar(select(UsageReportState).where(
            UsageReportState.provider == batch.provider, UsageReportState.subscription_id == batch.subscription_id,
            UsageReportState.feature == batch.feature).with_for_update())
        return state if state is not None and state.pending_key == batch.idempotency_key else None

    def _accepted(self, batch: UsageBatch, now: datetime) -> None:
        with self._kernel.session() as session:
            state = self._state(session, batch)
            if state is None:  # another process saw it accepted first
                return
            state.billed_units += batch.units
            state.pending_key = state.pending_units = state.pending_price_key = state.pending_at = None
            state.reported_at, state.updated_at, state.last_error, state.attempts = now, now, None, 0
            self._kernel.outbox.publish(session, "billing.usage.reported", {
                "provider": batch.provider, "subscription_id": batch.subscription_id, "subject": batch.subject,
                "feature": batch.feature, "units": batch.units, "billed_units": state.billed_units,
                "price_key": batch.price_key}, key=batch.idempotency_key)

    def _failed(self, batch: UsageBatch, error: str) -> None:
        with self._kernel.session() as session:
            state = self._state(session, batch)
            if state is not None:
                state.last_error, state.attempts, state.updated_at = error[:1000], state.attempts + 1, \
                    self._kernel.now()

    def status(self, subject: str | None = None) -> list[dict[str, Any]]:
        """Every usage row (of ``subject`` when given): what is billed, pending and failing."""
        with self._kernel.session(read_only=True) as session:
            query = select(UsageReportState).order_by(UsageReportState.subject, UsageReportState.subscription_id,
                                                      UsageReportState.feature)
            if subject is not None:
                query = query.where(UsageReportState.subject == subject)
            return [{"provider": s.provider, "subscription_id": s.subscription_id, "subject": s.subject,
                     "feature": s.feature, "counted_since": s.counted_since.isoformat(),
                     "billed_units": s.billed_units, "pending_units": s.pending_units,
                     "reported_at": s.reported_at.isoformat() if s.reported_at else None,
                     "last_error": s.last_error, "attempts": s.attempts} for s in session.scalars(query)]
