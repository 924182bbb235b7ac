"""The entitlement service (``kernel.entitlements``): check, consume, track, refund, reserve.

A *subject* is a workspace id (``ws_...``: a pooled quota shared by its members) or a user id.
For a workspace, ``member`` names the user acting, so a plan's ``per_member`` cap applies.
Every accepted unit is written to the usage ledger once (unique idempotency key) in the same
transaction as the SQL counters; a refused call writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendo.entitlements.catalog import Catalog, FeatureDefinition, Grant, Plan
from vendo.entitlements.models import Assignment, CatalogVersion, Hold, LedgerEntry
from vendo.entitlements.periods import period_end, period_start
from vendo.entitlements.store import Bucket
from vendo.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

ACTIVE_STATUSES = ("active", "trialing")
TIER_LIMITED = "TIER_LIMITED"
USER_QUOTA_EXHAUSTED = "USER_QUOTA_EXHAUSTED"
WORKSPACE_QUOTA_EXHAUSTED = "WORKSPACE_QUOTA_EXHAUSTED"
RATE_LIMITED = "RATE_LIMITED"
SUBSCRIPTION_INACTIVE = "SUBSCRIPTION_INACTIVE"


@dataclass
class Decision:
    """The answer of ``check``/``consume``: allowed or not, why, and what is left."""

    allowed: bool
    feature: str
    limit: int | None = None
    used: int = 0
    remaining: int | None = None
    resets_at: datetime | None = None
    reason: str | None = None
    upgrade_tier: str | None = None
    message: str = ""
    plan: str | None = None
    fallback: bool = False
    hold_id: str | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (``resets_at`` as ISO 8601)."""
        data = asdict(self)
        data["resets_at"] = self.resets_at.isoformat() if self.resets_at else None
        data.pop("extra")
        return {**data, **self.extra}


@dataclass
class _Context:
    """Everything a decision needs about one subject and feature, read once."""

    subject: str
    member: str | None
    feature: str
    definition: FeatureDefinition
    catalog: Catalog
    plan: Plan
    grant: Grant | None
    limit: int | None
    inactive_plan: Plan | None
    now: datetime
    period: str
    start: datetime
    buckets: list[Bucket]


def _is_workspace(subject: str) -> bool:
    return subject.startswith("ws_")


def _positive(amount: int, what: str = "amount") -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidInput(f"{what} must be a positive integer", code="invalid_amount")
    return amount


class Entitlements:
    """Gates and counts every capability (see the module docstring)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._catalogs: dict[int, Catalog] = {}

    # -- catalog -------------------------------------------------------------------------------

    def load_catalog(self, catalog: Catalog, source: str = "") -> tuple[int, bool]:
        """Store ``catalog`` as the current version; return ``(version, changed)``. Loading
        the same content again changes nothing; subjects keep their version's terms."""
        definition = catalog.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        with self._kernel.session() as session:
            latest = session.scalar(select(CatalogVersion).order_by(CatalogVersion.version.desc()).limit(1))
            if latest is not None and latest.digest == digest:
                return latest.version, False
            version = (latest.version + 1) if latest else 1
            session.add(CatalogVersion(version=version, definition=definition, digest=digest, source=source,
                                       created_at=self._kernel.now()))
        self._catalogs[version] = catalog
        return version, True

    def catalog(self, version: int | None = None, session: Session | None = None) -> Catalog:
        """A catalog version (the current one by default).

        :raises NotFound: ``no_catalog`` when none was loaded (``vendo plans load FILE``).
        """
        if version is not None and version in self._catalogs:
            return self._catalogs[version]
        if session is None:
            with self._kernel.session() as own:
                return self.catalog(version, own)
        query = select(CatalogVersion)
        query = query.where(CatalogVersion.version == version) if version is not None else \
            query.order_by(CatalogVersion.version.desc()).limit(1)
        row = session.scalar(query)
        if row is None:
            raise NotFound("no plan catalog is loaded: run `vendo plans load FILE`", code="no_catalog")
        catalog = self._catalogs.get(row.version) or Catalog.model_validate(row.definition)
        self._catalogs[row.version] = catalog
        return catalog

    def current_version(self, session: Session) -> int:
        """The newest catalog version number."""
        version = session.scalar(select(func.max(CatalogVersion.version)))
        if version is None:
            raise NotFound("no plan catalog is loaded: run `vendo plans load FILE`", code="no_catalog")
        return version

    # -- assignments -----------------------------------------------------------------------------

    def assign(self, session: Session, subject: str, plan_id: str, *, status: str = "active",
               trial_days: int | None = None, seats: int = 1, add_ons: dict[str, int] | None = None,
               grace_until: datetime | None = None) -> Assignment:
        """Put ``subject`` on a plan of the current catalog (the billing domain calls this as
        subscriptions change). ``trial_days`` (default: the plan's) makes it ``trialing``."""
        version = self.current_version(session)
        catalog = self.catalog(version, session)
        plan = catalog.plan(plan_id)
        for add_on in add_ons or {}:
            if add_on not in plan.add_ons:
                raise InvalidInput(f"add-on '{add_on}' is not offered on plan '{plan_id}'", code="unknown_add_on")
        now = self._kernel.now()
        days = plan.trial_days if trial_days is None else trial_days
        if status == "trialing" and not days:
            raise InvalidInput(f"plan '{plan_id}' has no trial", code="no_trial")
        assignment = session.get(Assignment, subject) or Assignment(subject=subject)
        assignment.plan_id, assignment.catalog_version, assignment.status = plan_id, version, status
        assignment.trial_ends_at = now + timedelta(days=days) if status == "trialing" else None
        assignment.grace_until, assignment.seats = grace_until, seats
        assignment.add_ons, assignment.updated_at = dict(add_ons or {}), now
        session.add(assignment)
        return assignment

    def _plan_of(self, session: Session, subject: str, now: datetime) -> tuple[Catalog, Plan, Plan | None, Assignment | None]:
        """``(catalog, effective plan, inactive paid plan or None, assignment)``."""
        assignment = session.get(Assignment, subject)
        if assignment is None:
            catalog = self.catalog(None, session)
            return catalog, catalog.default_plan, None, None
        catalog = self.catalog(assignment.catalog_version, session)
        plan = catalog.plan(assignment.plan_id)
        active = assignment.status in ACTIVE_STATUSES or (
            assignment.status == "past_due" and assignment.grace_until is not None and now < assignment.grace_until)
        if assignment.status == "trialing" and assignment.trial_ends_at is not None and now >= assignment.trial_ends_at:
            active = False
        if active:
            return catalog, plan, None, assignment
        current = self.catalog(None, session)
        return current, current.default_plan, plan, assignment

    # -- decisions ---------------------------------------------------------------------------------

    def _context(self, session: Session, subject: str, feature: str, member: str | None) -> _Context:
        if not subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        now = self._kernel.now()
        catalog, plan, inactive, assignment = self._plan_of(session, subject, now)
        definition = catalog.feature(feature)
        grant = plan.features.get(feature)
        limit = grant.limit if grant is not None else 0
        if grant is not None and limit is not None and assignment is not None and not inactive:
            add_ons = catalog.add_ons
            limit += sum(add_ons[a].adds.get(feature, 0) * count for a, count in (assignment.add_ons or {}).items()
                         if a in add_ons)
        period = (grant.period if grant is not None and grant.period else definition.period) \
            if definition.kind == "metered" else "lifetime"
        start = period_start(period, now)
        stamp = start.strftime("%Y%m%dT%H%M")
        buckets = [Bucket(f"{subject}:{feature}:{period}:{stamp}", limit)]
        if member and _is_workspace(subject) and grant is not None and grant.per_member is not None:
            buckets.append(Bucket(f"{subject}/{member}:{feature}:{period}:{stamp}", grant.per_member))
        return _Context(subject, member, feature, definition, catalog, plan, grant, limit, inactive, now, period,
                        start, buckets)

    def _granted(self, ctx: _Context) -> bool:
        if ctx.grant is None or not ctx.grant.enabled:
            return False
        return ctx.definition.kind == "boolean" or ctx.limit is None or ctx.limit > 0

    def _upgrade(self, ctx: _Context, needed: int) -> str | None:
        """The cheapest plan above the current one that would allow ``needed`` units."""
        plans = ctx.catalog.ordered_plans()
        ids = [p.id for p in plans]
        current = ids.index(ctx.plan.id) if ctx.plan.id in ids else -1
        for plan in plans[current + 1:]:
            grant = plan.features.get(ctx.feature)
            if grant is None or not grant.enabled:
                continue
            if ctx.definition.kind == "boolean" or grant.limit is None or grant.limit >= needed:
                return plan.id
        return None

    def _decision(self, ctx: _Context, used: int, amount: int, allowed: bool, *,
                  member_used: int | None = None) -> Decision:
        limit = None if ctx.definition.kind == "boolean" else ctx.limit
        remaining = None if limit is None else max(limit - used, 0)
        decision = Decision(allowed=allowed, feature=ctx.feature, limit=limit, used=used, remaining=remaining,
                            resets_at=period_end(ctx.period, ctx.now) if ctx.definition.kind == "metered" else None,
                            plan=ctx.plan.id)
        if allowed:
            decision.message = "allowed"
            return decision
        if not self._granted(ctx):
            if ctx.inactive_plan is not None and _grants(ctx.inactive_plan, ctx.feature):
                decision.reason = SUBSCRIPTION_INACTIVE
                decision.message = (f"your {ctx.inactive_plan.name} subscription is not active: "
                                    f"renew it to use {ctx.feature}")
                decision.upgrade_tier = ctx.inactive_plan.id
                return decision
            decision.reason = TIER_LIMITED
        elif member_used is not None:
            decision.reason = USER_QUOTA_EXHAUSTED
            decision.extra["member_limit"] = ctx.grant.per_member
            decision.extra["member_used"] = member_used
        else:
            decision.reason = WORKSPACE_QUOTA_EXHAUSTED if _is_workspace(ctx.subject) else USER_QUOTA_EXHAUSTED
        decision.upgrade_tier = self._upgrade(ctx, used + amount)
        upgrade = f"; upgrade to {ctx.catalog.plans[decision.upgrade_tier].name}" if decision.upgrade_tier else ""
        decision.message = {
            TIER_LIMITED: f"{ctx.feature} is not included in the {ctx.plan.name} plan{upgrade}",
            USER_QUOTA_EXHAUSTED: f"your {ctx.feature} quota is used up{upgrade}",
            WORKSPACE_QUOTA_EXHAUSTED: f"this workspace's {ctx.feature} quota is used up{upgrade}",
        }[decision.reason]
        return decision

    def _evaluate(self, session: Session, ctx: _Context, amount: int) -> Decision:
        """Would ``amount`` more be allowed now? (Reads only.)"""
        values = self._store.read(session, [b.key for b in ctx.buckets])
        if not self._granted(ctx):
            return self._decision(ctx, values[0], amount, False)
        if ctx.definition.kind == "boolean":
            return self._decision(ctx, 0, amount, True)
        for index, (bucket, value) in enumerate(zip(ctx.buckets, values)):
            if bucket.limit is not None and value + amount > bucket.limit:
                return self._decision(ctx, values[0], amount, False, member_used=value if index else None)
        return self._decision(ctx, values[0], amount, True)

    @property
    def _store(self) -> Any:
        return self._kernel.providers.get("counters")

    def check(self, subject: str, feature: str, amount: int = 1, *, member: str | None = None) -> Decision:
        """Would ``amount`` units of ``feature`` be allowed for ``subject`` now? Records nothing.

        :raises NotFound: ``unknown_feature`` or ``no_catalog``.
        :raises InvalidInput: ``invalid_amount``.
        """
        _positive(amount)
        with self._kernel.session() as session:
            return self._evaluate(session, self._context(session, subject, feature, member), amount)

    # -- recording ------------------------------------------------------------------------------------

    def _replay(self, session: Session, key: str, subject: str, feature: str, amount: int, kind: str) -> Decision | None:
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))
        if entry is None:
            return None
        if (entry.subject, entry.feature, entry.amount, entry.kind) != (subject, feature, amount, kind):
            raise Conflict(f"idempotency key {key!r} was used for a different request", code="idempotency_conflict",
                           details={"subject": entry.subject, "feature": entry.feature, "amount": entry.amount})
        used = self._store.read(session, [entry.buckets[0]])[0] if entry.buckets else 0
        return Decision(allowed=True, feature=feature, used=used, replayed=True, message="already recorded")

    def _record(self, subject: str, feature: str, amount: int, *, kind: str, gated: bool, member: str | None,
                idempotency_key: str | None, tokens: int, cost: float, metadata: dict[str, Any] | None) -> Decision:
        key = idempotency_key or f"auto:{uuid.uuid4().hex}"
        if len(key) > 255:
            raise InvalidInput("idempotency_key is at most 255 characters", code="invalid_idempotency_key")
        with self._kernel.session() as session:
            replay = self._replay(session, key, subject, feature, amount, kind)
            if replay is not None:
                return replay
            ctx = self._context(session, subject, feature, member)
            if gated and not self._granted(ctx):
                return self._evaluate(session, ctx, amount)
            if ctx.definition.kind == "boolean":
                raise InvalidInput(f"{feature} is a boolean feature: check it, there is nothing to count",
                                   code="not_countable")
            try:
                with session.begin_nested():
                    session.add(LedgerEntry(
                        idempotency_key=key, kind=kind, subject=subject, member=member, feature=feature,
                        period_start=ctx.start, amount=amount, tokens=tokens, cost=cost,
                        buckets=[b.key for b in ctx.buckets], details=dict(metadata or {}), created_at=ctx.now,
                    ))
                    session.flush()  # a duplicate key fails here, before any counter moves
                    if gated:
                        values = self._store.try_add(session, ctx.buckets, amount)
                        if values is None:
                            raise _Refused()
                    else:
                        values = self._store.add(session, ctx.buckets, amount)
            except _Refused:
                return self._evaluate(session, ctx, amount)
            except IntegrityError:  # the same key, recorded concurrently: answer as a replay
                replay = self._replay(session, key, subject, feature, amount, kind)
                if replay is None:
                    raise
                return replay
            return self._decision(ctx, values[0], amount, True)

    def consume(self, subject: str, feature: str, amount: int = 1, *, member: str | None = None,
                idempotency_key: str | None = None, tokens: int = 0, cost: float = 0.0,
                metadata: dict[str, Any] | None = None) -> Decision:
        """Atomically check and record ``amount`` units: two concurrent calls can never both
        take the last unit. Retrying with the same ``idempotency_key`` never counts twice.

        :raises Conflict: ``idempotency_conflict`` (same key, different request).
        """
        return self._record(subject, feature, _positive(amount), kind="consume", gated=True, member=member,
                            idempotency_key=idempotency_key, tokens=tokens, cost=cost, metadata=metadata)

    def track(self, subject: str, feature: str, amount: int = 1, *, member: str | None = None,
              idempotency_key: str | None = None, tokens: int = 0, cost: float = 0.0,
              metadata: dict[str, Any] | None = None) -> Decision:
        """Record usage without gating (usage-based billing, or a limit gauge going down with a
        negative ``amount``)."""
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidInput("amount must be a non-zero integer", code="invalid_amount")
        return self._record(subject, feature, amount, kind="track", gated=False, member=member,
                            idempotency_key=idempotency_key, tokens=tokens, cost=cost, metadata=metadata)

    def refund(self, idempotency_key: str) -> dict[str, Any]:
        """Give back the units of an accepted ``consume`` (the paid work failed). Once only.

        :raises NotFound: ``unknown_idempotency_key``.
        :raises Conflict: ``already_refunded``.
        """
        with self._kernel.session() as session:
            entry = session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key,
                                                             LedgerEntry.kind.in_(("consume", "commit"))))
            if entry is None:
                raise NotFound(f"no consumption with idempotency key {idempotency_key!r}",
                               code="unknown_idempotency_key")
            try:
                with session.begin_nested():
                    session.add(LedgerEntry(
                        idempotency_key=f"refund:{idempotency_key}", kind="refund", subject=entry.subject,
                        member=entry.member, feature=entry.feature, period_start=entry.period_start,
                        amount=-entry.amount, tokens=-entry.tokens, cost=-entry.cost, buckets=entry.buckets,
                        details={}, created_at=self._kernel.now(),
                    ))
            except IntegrityError:
                raise Conflict("this consumption was already refunded", code="already_refunded") from None
            buckets = [Bucket(key, None) for key in entry.buckets]
            values = self._store.add(session, buckets, -entry.amount)
            return {"refunded": entry.amount, "feature": entry.feature, "subject": entry.subject,
                    "used": values[0] if values else 0}

    # -- holds ----------------------------------------------------------------------------------------

    def reserve(self, subject: str, feature: str, estimate: int, *, member: str | None = None,
                ttl: float = 300.0) -> Decision:
        """Hold ``estimate`` units now (they count against the quota at once); settle later with
        :meth:`commit` or :meth:`release`. An expired hold is released by :meth:`release_expired`.
        The decision's ``hold_id`` names the hold when allowed."""
        _positive(estimate, "estimate")
        if ttl <= 0 or ttl > 86_400:
            raise InvalidInput("ttl is 1 second to 1 day", code="invalid_ttl")
        with self._kernel.session() as session:
            ctx = self._context(session, subject, feature, member)
            if not self._granted(ctx):
                return self._evaluate(session, ctx, estimate)
            values = self._store.try_add(session, ctx.buckets, estimate)
            if values is None:
                return self._evaluate(session, ctx, estimate)
            hold = Hold(id=f"hold_{uuid.uuid4().hex}", subject=subject, member=member, feature=feature,
                        period_start=ctx.start, amount=estimate, buckets=[b.key for b in ctx.buckets],
                        status="held", expires_at=ctx.now + timedelta(seconds=ttl), created_at=ctx.now)
            session.add(hold)
            decision = self._decision(ctx, values[0], estimate, True)
            decision.hold_id = hold.id
            return decision

    def _settle(self, session: Session, hold_id: str, status: str) -> Hold:
        hold = session.get(Hold, hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id}", code="unknown_hold")
        claimed = session.execute(update(Hold).where(Hold.id == hold_id, Hold.status == "held")
                                  .values(status=status, settled_at=self._kernel.now())).rowcount
        if claimed != 1:
            session.refresh(hold)
            raise Conflict(f"hold {hold_id} is already {hold.status}", code="hold_settled")
        return hold

    def commit(self, hold_id: str, actual: int, *, tokens: int = 0, cost: float = 0.0,
               metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Settle a hold at the ``actual`` units used (0 or more): the difference with the
        estimate is given back, or added (the work was done). Recorded in the ledger once."""
        if not isinstance(actual, int) or actual < 0:
            raise InvalidInput("actual must be an integer, 0 or more", code="invalid_amount")
        with self._kernel.session() as session:
            hold = self._settle(session, hold_id, "committed")
            buckets = [Bucket(key, None) for key in hold.buckets]
            values = self._store.add(session, buckets, actual - hold.amount) if actual != hold.amount \
                else self._store.read(session, hold.buckets)
            session.add(LedgerEntry(
                idempotency_key=f"hold:{hold.id}", kind="commit", subject=hold.subject, member=hold.member,
                feature=hold.feature, period_start=hold.period_start, amount=actual, tokens=tokens, cost=cost,
                buckets=hold.buckets, details=dict(metadata or {}), created_at=self._kernel.now(),
            ))
            return {"hold_id": hold.id, "committed": actual, "released": max(hold.amount - actual, 0),
                    "used": values[0] if values else 0}

    def release(self, hold_id: str) -> dict[str, Any]:
        """Give a hold's units back (the work did not happen)."""
        with self._kernel.session() as session:
            hold = self._settle(session, hold_id, "released")
            values = self._store.add(session, [Bucket(k, None) for k in hold.buckets], -hold.amount)
            return {"hold_id": hold.id, "released": hold.amount, "used": values[0] if values else 0}

    def release_expired(self) -> int:
        """Release every hold past its expiry; return how many."""
        with self._kernel.session() as session:
            expired = session.scalars(select(Hold.id).where(Hold.status == "held",
                                                            Hold.expires_at <= self._kernel.now())).all()
        released = 0
        for hold_id in expired:
            try:
                self.release(hold_id)
                released += 1
            except Conflict:
                continue  # settled meanwhile by its owner
        return released

    # -- reading ----------------------------------------------------------------------------------------

    def usage(self, subject: str, *, member: str | None = None) -> dict[str, Any]:
        """Every countable feature of the subject's plan with used, limit, resets_at and an 80% warning."""
        with self._kernel.session() as session:
            catalog, plan, _inactive, _assignment = self._plan_of(session, subject, self._kernel.now())
            meters = []
            for name, definition in catalog.features.items():
                if definition.kind == "boolean":
                    continue
                ctx = self._context(session, subject, name, member)
                decision = self._evaluate(session, ctx, 1)
                warning = decision.limit not in (None, 0) and decision.used >= 0.8 * decision.limit
                meters.append({"feature": name, "kind": definition.kind, "period": ctx.period,
                               "used": decision.used, "limit": decision.limit, "remaining": decision.remaining,
                               "resets_at": decision.resets_at.isoformat() if decision.resets_at else None,
                               "warning": bool(warning)})
            return {"subject": subject, "plan": plan.id, "meters": meters}

    def entitlements(self, subject: str) -> dict[str, Any]:
        """The subject's plan and what it grants, feature by feature."""
        with self._kernel.session() as session:
            now = self._kernel.now()
            catalog, plan, inactive, assignment = self._plan_of(session, subject, now)
            features = {}
            for name, definition in catalog.features.items():
                ctx = self._context(session, subject, name, None)
                features[name] = {"kind": definition.kind, "enabled": self._granted(ctx),
                                  "limit": None if definition.kind == "boolean" else ctx.limit,
                                  "period": ctx.period if definition.kind == "metered" else None}
            return {"subject": subject, "plan": plan.id, "plan_name": plan.name,
                    "status": assignment.status if assignment else "default",
                    "inactive_plan": inactive.id if inactive else None,
                    "trial_ends_at": assignment.trial_ends_at.isoformat() if assignment and assignment.trial_ends_at
                    else None, "features": features}

    def usage_history(self, subject: str, *, feature: str | None = None, since: datetime | None = None,
                      until: datetime | None = None) -> list[dict[str, Any]]:
        """Ledger totals by feature and period (units, tokens, cost), oldest first."""
        query = (select(LedgerEntry.feature, LedgerEntry.period_start, func.sum(LedgerEntry.amount),
                        func.sum(LedgerEntry.tokens), func.sum(LedgerEntry.cost), func.count())
                 .where(LedgerEntry.subject == subject)
                 .group_by(LedgerEntry.feature, LedgerEntry.period_start)
                 .order_by(LedgerEntry.period_start, LedgerEntry.feature))
        if feature:
            query = query.where(LedgerEntry.feature == feature)
        if since:
            query = query.where(LedgerEntry.created_at >= since)
        if until:
            query = query.where(LedgerEntry.created_at < until)
        with self._kernel.session() as session:
            return [{"feature": f, "period_start": start.isoformat(), "units": int(units or 0),
                     "tokens": int(tokens or 0), "cost": float(cost or 0.0), "records": count}
                    for f, start, units, tokens, cost, count in session.execute(query)]


class _Refused(Exception):
    """Internal: a gated write was refused; roll its savepoint back."""


def _grants(plan: Plan, feature: str) -> bool:
    grant = plan.features.get(feature)
    return grant is not None and grant.enabled and (grant.limit is None or grant.limit > 0)
