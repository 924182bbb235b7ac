"""The entitlement service (``kernel.entitlements``): check, consume, track, refund, reserve.

A *subject* is a workspace id (``ws_...``: a pooled quota shared by its members) or a user id.
For a workspace, ``member`` names the user acting, so a plan's ``per_member`` cap applies.
Every accepted unit is written to the usage ledger once (unique idempotency key) in the same
transaction as the counter move: with the SQL store both commit together; with a store
outside the database (Redis) the store registers the opposite move with
:func:`vendo.on_rollback` and the service runs it if the transaction does not commit. A
refused call writes nothing.

When the counter store is unreachable, each feature follows its failure policy:
``fail_closed`` (metered features by default) raises :class:`CounterStoreUnavailable` (503);
``fail_open`` allows with ``fallback=True`` and records the usage in the ledger with
``applied = false``, the *journal*, which :meth:`Entitlements.apply_journal` moves into the
store once it is back (the server does it every few seconds). Settlements (``track``,
``refund``, ``commit``, ``release``) are always journalled: the work they record happened.

Every counter can be recomputed from the ledger (:meth:`Entitlements.rebuild_counters`) and
compared with it (:meth:`Entitlements.reconcile`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterator

from sqlalchemy import Text, and_, bindparam, cast, delete, event, false, func, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendo.capabilities import COMPENSATIONS, counter_key, counter_period
from vendo.db import run_transaction, utcnow
from vendo.entitlements.catalog import Catalog, FeatureDefinition, Grant, Plan
from vendo.entitlements.models import Assignment, CatalogVersion, Counter, Hold, LedgerEntry
from vendo.entitlements.periods import period_end, period_start
from vendo.entitlements.groupcommit import GroupCommit
from vendo.entitlements.plancache import MISS, NEWEST_CATALOG, PlanCache
from vendo.entitlements.store import Bucket, SQLCounterStore
from vendo.errors import Conflict, CounterStoreUnavailable, InvalidInput, NotFound

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.entitlements")

ACTIVE_STATUSES = ("active", "trialing")
TIER_LIMITED = "TIER_LIMITED"
USER_QUOTA_EXHAUSTED = "USER_QUOTA_EXHAUSTED"
WORKSPACE_QUOTA_EXHAUSTED = "WORKSPACE_QUOTA_EXHAUSTED"
RATE_LIMITED = "RATE_LIMITED"
SUBSCRIPTION_INACTIVE = "SUBSCRIPTION_INACTIVE"

#: Ledger kinds whose ``amount`` moved the counters of their ``buckets``.
COUNTED_KINDS = ("consume", "track", "refund", "commit")
#: Quota periods whose current counters ``rebuild_counters``/``reconcile`` cover by default.
QUOTA_PERIODS = ("minute", "hour", "day", "month", "lifetime")
FALLBACK_MESSAGE = "allowed without the counter store (unreachable): the usage is journalled and counted when it is back"
_STAMP = "%Y%m%dT%H%M"


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
        data = {name: getattr(self, name) for name in _DECISION_FIELDS}  # flat: no deep copy (asdict)
        data["resets_at"] = self.resets_at.isoformat() if self.resets_at else None
        return {**data, **self.extra}


_DECISION_FIELDS = tuple(f.name for f in fields(Decision) if f.name != "extra")


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


#: Statements of the hot path, built once (SQLAlchemy then reuses their compiled form).
_ASSIGNMENTS = Assignment.__table__.c
_ASSIGNMENT = select(_ASSIGNMENTS.plan_id, _ASSIGNMENTS.catalog_version, _ASSIGNMENTS.status,
                     _ASSIGNMENTS.trial_ends_at, _ASSIGNMENTS.grace_until, _ASSIGNMENTS.add_ons) \
    .where(_ASSIGNMENTS.subject == bindparam("subject"))
_NEWEST_VERSION = select(func.max(CatalogVersion.__table__.c.version))
_LEDGER_INSERT = LedgerEntry.__table__.insert()
#: ``session.info`` keys: subjects assigned in the session's open transaction, and whether the
#: session already calls back on commit and rollback.
_ASSIGNED = "vendo.entitlements.assigned"
_LISTENING = "vendo.entitlements.listening"

_HOLDS = Hold.__table__.c
#: Claim several held holds at once, returning what their settlement needs.
_CLAIM_HOLDS = Hold.__table__.update() \
    .where(_HOLDS.id.in_(bindparam("ids", expanding=True)), _HOLDS.status == "held") \
    .values(status=bindparam("new_status"), settled_at=bindparam("settled")) \
    .returning(_HOLDS.id, _HOLDS.applied, _HOLDS.amount, _HOLDS.buckets, _HOLDS.subject, _HOLDS.member,
               _HOLDS.feature, _HOLDS.period_start)
_HOLD_STATUS = select(_HOLDS.id, _HOLDS.status).where(_HOLDS.id.in_(bindparam("ids", expanding=True)))
_HOLD_APPLIED = Hold.__table__.update().where(_HOLDS.id == bindparam("hold_id")).values(applied=bindparam("applied"))
_HOLD_INSERT = Hold.__table__.insert()


def _counter_adds(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET value = value + excluded.value`` without
    RETURNING, for executemany (SQLAlchemy sends the rows as one multi-row statement)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = Counter.__table__
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={"value": table.c.value + statement.excluded.value, "updated_at": statement.excluded.updated_at})


_COUNTER_ADDS = {name: _counter_adds(name) for name in ("sqlite", "postgresql")}


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
        self._rebuilding = threading.Lock()
        #: Subjects' assignments and the newest catalog version (see :mod:`vendo.entitlements.plancache`).
        self.plan_cache = PlanCache(kernel.settings.entitlements.plan_cache_ttl)
        group = kernel.settings.entitlements.group_commit
        #: Concurrent consume/track calls share transactions (see :mod:`vendo.entitlements.groupcommit`).
        self._group = GroupCommit(self._transaction, max_batch=group) if group > 1 else None

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
        self.plan_cache.invalidate([NEWEST_CATALOG])
        return version, True

    def catalog(self, version: int | None = None, session: Session | None = None) -> Catalog:
        """A catalog version (the current one by default).

        :raises NotFound: ``no_catalog`` when none was loaded (``vendo plans load FILE``).
        """
        if version is not None and version in self._catalogs:
            return self._catalogs[version]
        if version is None:
            newest = self.plan_cache.get(NEWEST_CATALOG)
            if newest in self._catalogs:  # (MISS never is)
                return self._catalogs[newest]
        if session is None:
            with self._kernel.session(read_only=True) as own:
                return self.catalog(version, own)
        if version is None:  # the newest version number, then the (cached) catalog
            newest = self._newest_version(session)
            if newest is not None and newest in self._catalogs:
                return self._catalogs[newest]
        query = select(CatalogVersion)
        query = query.where(CatalogVersion.version == version) if version is not None else \
            query.order_by(CatalogVersion.version.desc()).limit(1)
        row = session.scalar(query)
        if row is None:
            raise NotFound("no plan catalog is loaded: run `vendo plans load FILE`", code="no_catalog")
        catalog = self._catalogs.get(row.version) or Catalog.model_validate(row.definition)
        self._catalogs[row.version] = catalog
        return catalog

    def _newest_version(self, session: Session) -> int | None:
        """The newest catalog version number, from the plan cache when fresh."""
        cache = self.plan_cache
        newest = cache.get(NEWEST_CATALOG)
        if newest is MISS:
            generation = cache.generation
            newest = session.scalar(_NEWEST_VERSION)
            if newest is not None:
                cache.put(NEWEST_CATALOG, newest, generation)
        return newest

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
        """Put ``subject`` on a plan (the billing domain calls this as subscriptions change).
        ``trial_days`` (default: the plan's) makes it ``trialing``.

        A subject moving to another plan gets the current catalog's terms; one staying on its
        plan (a renewal, a payment, a seat change) keeps the catalog version it subscribed
        under while that version still has the plan: editing a plan never changes what existing
        subscribers get until they change plan."""
        assignment = session.get(Assignment, subject)
        version = self.current_version(session)
        if assignment is not None and assignment.plan_id == plan_id and assignment.catalog_version != version:
            try:
                self.catalog(assignment.catalog_version, session).plan(plan_id)
                version = assignment.catalog_version
            except NotFound:  # the version, or the plan in it, is gone: the current terms
                pass
        catalog = self.catalog(version, session)
        plan = catalog.plan(plan_id)
        for add_on in add_ons or {}:
            if add_on not in plan.add_ons:
                raise InvalidInput(f"add-on '{add_on}' is not offered on plan '{plan_id}'", code="unknown_add_on")
        now = self._kernel.now()
        days = plan.trial_days if trial_days is None else trial_days
        if status == "trialing" and not days:
            raise InvalidInput(f"plan '{plan_id}' has no trial", code="no_trial")
        assignment = assignment or Assignment(subject=subject)
        assignment.plan_id, assignment.catalog_version, assignment.status = plan_id, version, status
        assignment.trial_ends_at = now + timedelta(days=days) if status == "trialing" else None
        assignment.grace_until, assignment.seats = grace_until, seats
        assignment.add_ons, assignment.updated_at = dict(add_ons or {}), now
        session.add(assignment)
        self._note_assigned(session, subject)
        return assignment

    def _note_assigned(self, session: Session, subject: str) -> None:
        """Drop ``subject`` from the plan cache once ``session``'s transaction commits (and
        bypass the cache for it inside that transaction); forget it if it rolls back."""
        session.info.setdefault(_ASSIGNED, set()).add(subject)
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "after_commit", self._assignments_committed)
            event.listen(session, "after_soft_rollback", _assignments_rolled_back)

    def _assignments_committed(self, session: Session) -> None:
        self.plan_cache.invalidate(session.info.pop(_ASSIGNED, ()))

    def _assignment(self, session: Session, subject: str) -> Any:
        """The subject's assignment row (``None``: none), from the plan cache when fresh and not
        being changed by ``session``'s own transaction."""
        cache = self.plan_cache
        if subject in session.info.get(_ASSIGNED, ()):  # this transaction's own, uncommitted write
            session.flush()
            return session.execute(_ASSIGNMENT, {"subject": subject}).first()
        row = cache.get(subject)
        if row is MISS:
            if session.new or session.dirty:  # a plain statement does not autoflush: see pending assignments
                session.flush()
            generation = cache.generation
            row = session.connection().execute(_ASSIGNMENT, {"subject": subject}).first()
            cache.put(subject, row, generation)
        return row

    def _plan_of(self, session: Session | None, subject: str, now: datetime) -> Any:
        """``(catalog, effective plan, inactive paid plan or None, assignment)``; the assignment
        is a row with the columns of :class:`Assignment` (read without building an object: this
        runs on every decision). Without a ``session``: from the plan cache alone, ``None``
        when it has nothing fresh."""
        assignment = self.plan_cache.get(subject) if session is None else self._assignment(session, subject)
        if assignment is MISS:
            return None
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

    def plan_state(self, subject: str, session: Session | None = None) -> tuple[Catalog, Plan, Plan | None, Any] | None:
        """``(catalog, effective plan, inactive paid plan or None, assignment row or None)`` for
        ``subject`` now, read in ``session``'s transaction (its own uncommitted assignments
        included). Without a ``session``, from the plan cache alone: no database access (safe
        on an event loop), ``None`` when the cache has nothing fresh. Pass the answer to
        :meth:`hold_many` as ``planned`` to read the plan once for several features.

        :raises NotFound: ``no_catalog``.
        """
        if not subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        return self._plan_of(session, subject, self._kernel.now())

    def plan(self, subject: str) -> Plan:
        """The plan in effect for ``subject`` now: its own while active, else the current
        catalog's default (from the plan cache when fresh)."""
        return self.effective_plan(subject)[1]

    def effective_plan(self, subject: str, session: Session | None = None) -> tuple[Catalog, Plan]:
        """The catalog (of the subject's terms) and the plan in force for ``subject`` now: its
        plan while active or trialing, else the default plan (from the plan cache when fresh).

        :raises NotFound: ``no_catalog``.
        """
        now = self._kernel.now()
        found = self._plan_of(session, subject, now)
        if found is None:
            with self._kernel.session(read_only=True) as own:
                found = self._plan_of(own, subject, now)
        return found[0], found[1]

    # -- decisions ---------------------------------------------------------------------------------

    def _context(self, session: Session | None, subject: str, feature: str, member: str | None,
                 planned: tuple[Catalog, Plan, Plan | None, Any] | None = None) -> Any:
        """Everything a decision on ``feature`` needs; without a ``session``, from the plan
        cache alone (``None`` when it has nothing fresh); ``planned``: :meth:`_plan_of`'s answer
        already read in this transaction (several features of one subject at once)."""
        if not subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        now = self._kernel.now()
        found = planned or self._plan_of(session, subject, now)
        if found is None:
            return None
        catalog, plan, inactive, assignment = found
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
        buckets = [Bucket(counter_key(subject, feature, period, start), limit)]
        if member and _is_workspace(subject) and grant is not None and grant.per_member is not None:
            buckets.append(Bucket(counter_key(f"{subject}/{member}", feature, period, start), grant.per_member))
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

    def _judge(self, ctx: _Context, values: list[int], amount: int, *, refused: bool = False) -> Decision:
        """The decision on ``amount`` more units given the counters' ``values`` (one per bucket).
        ``refused``: the store already refused them, so the answer is never "allowed" (the
        values may have moved since)."""
        if not self._granted(ctx):
            return self._decision(ctx, values[0] if values else 0, amount, False)
        if ctx.definition.kind == "boolean":
            return self._decision(ctx, 0, amount, True)
        for index, (bucket, value) in enumerate(zip(ctx.buckets, values)):
            if bucket.limit is not None and value + amount > bucket.limit:
                return self._decision(ctx, values[0], amount, False, member_used=value if index else None)
        return self._decision(ctx, values[0], amount, not refused)

    def _evaluate(self, session: Session, ctx: _Context, amount: int, *, refused: bool = False) -> Decision:
        """Would ``amount`` more be allowed now? (Reads only.)

        :raises CounterStoreUnavailable: the store is unreachable and the feature fails closed.
        """
        if ctx.definition.kind == "boolean":
            return self._judge(ctx, [0], amount)
        try:
            values = self._store.read(session, [b.key for b in ctx.buckets])
        except CounterStoreUnavailable:
            if refused or not self._granted(ctx):  # decided without the store: report the ledger's usage
                return self._judge(ctx, self._ledger_values(session, ctx), amount, refused=refused)
            if ctx.definition.policy == "fail_closed":
                raise
            return self._fallback(session, ctx, amount)
        return self._judge(ctx, values, amount, refused=refused)

    def _fallback(self, session: Session, ctx: _Context, amount: int) -> Decision:
        """An allowed decision taken without the store (``fail_open``): ``used`` from the ledger."""
        decision = self._decision(ctx, self._ledger_values(session, ctx)[0], amount, True)
        decision.fallback, decision.message = True, FALLBACK_MESSAGE
        return decision

    def _ledger_values(self, session: Session, ctx: _Context) -> list[int]:
        """The usage of each of ``ctx``'s buckets according to the ledger and the holds."""
        totals = self._totals(session, pending=True, meter=(ctx.subject, ctx.feature, ctx.start))
        return [totals.get(bucket.key, 0) for bucket in ctx.buckets]

    def _used(self, session: Session, subject: str, feature: str, start: datetime, keys: list[str]) -> int:
        """The value of the first of ``keys`` for a settlement's answer: from the store, or from
        the ledger when the store is unreachable."""
        if not keys:
            return 0
        try:
            return self._store.read(session, keys[:1])[0]
        except CounterStoreUnavailable:
            return self._totals(session, pending=True, meter=(subject, feature, start)).get(keys[0], 0)

    @property
    def _store(self) -> Any:
        return self._kernel.providers.get("counters")

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A session in a transaction (committed on success, rolled back on error) whose
        counter moves outside the database are undone when it does not commit: the actions a
        store registered with :func:`vendo.on_rollback` run, newest first, before the error
        propagates (a failed commit included)."""
        undo: list[Callable[[], None]] = []
        try:
            with self._kernel.session() as session:
                session.info[COMPENSATIONS] = undo
                yield session
        except BaseException:
            _compensate(undo)
            raise

    def check(self, subject: str, feature: str, amount: int = 1, *, member: str | None = None) -> Decision:
        """Would ``amount`` units of ``feature`` be allowed for ``subject`` now? Records nothing.

        :raises NotFound: ``unknown_feature`` or ``no_catalog``.
        :raises InvalidInput: ``invalid_amount``.
        :raises CounterStoreUnavailable: the store is unreachable and the feature fails closed.
        """
        _positive(amount)
        ctx = self._context(None, subject, feature, member) if self.plan_cache.enabled else None
        if ctx is not None and ctx.definition.kind == "boolean":  # a cached plan answers alone
            return self._judge(ctx, [0], amount)
        with self._kernel.session(read_only=True) as session:
            return self._evaluate(session, ctx or self._context(session, subject, feature, member), amount)

    # -- recording ------------------------------------------------------------------------------------

    def _replay(self, session: Session, key: str, subject: str, feature: str, amount: int, kind: str) -> Decision | None:
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))
        if entry is None:
            return None
        if (entry.subject, entry.feature, entry.amount, entry.kind) != (subject, feature, amount, kind):
            raise Conflict(f"idempotency key {key!r} was used for a different request", code="idempotency_conflict",
                           details={"subject": entry.subject, "feature": entry.feature, "amount": entry.amount})
        used = self._used(session, entry.subject, entry.feature, entry.period_start, entry.buckets)
        return Decision(allowed=True, feature=feature, used=used, replayed=True, message="already recorded")

    def _record(self, subject: str, feature: str, amount: int, *, kind: str, gated: bool, member: str | None,
                idempotency_key: str | None, tokens: int, cost: float, metadata: dict[str, Any] | None) -> Decision:
        key = idempotency_key or f"auto:{uuid.uuid4().hex}"
        if len(key) > 255:
            raise InvalidInput("idempotency_key is at most 255 characters", code="invalid_idempotency_key")

        def work(session: Session) -> Decision:
            return self._record_in(session, key, subject, feature, amount, kind=kind, gated=gated, member=member,
                                   tokens=tokens, cost=cost, metadata=metadata)

        try:
            if self._group is not None:
                return self._group.run(work)
            return run_transaction(self._transaction, work)  # a deadlock with another process: again
        except IntegrityError:  # the same key, recorded before or concurrently: answer as a replay
            with self._kernel.session() as session:
                replay = self._replay(session, key, subject, feature, amount, kind)
            if replay is None:
                raise
            return replay

    def _record_in(self, session: Session, key: str, subject: str, feature: str, amount: int, *, kind: str,
                   gated: bool, member: str | None, tokens: int, cost: float,
                   metadata: dict[str, Any] | None) -> Decision:
        """One consume/track in ``session``'s transaction (possibly shared by a group commit)."""
        ctx = self._context(session, subject, feature, member)
        if gated and not self._granted(ctx):  # a retry of a call accepted before still answers as one
            return self._replay(session, key, subject, feature, amount, kind) or \
                self._evaluate(session, ctx, amount)
        if ctx.definition.kind == "boolean":
            raise InvalidInput(f"{feature} is a boolean feature: check it, there is nothing to count",
                               code="not_countable")
        # The entry first: a duplicate key fails here, before any counter moves.
        session.connection().execute(_LEDGER_INSERT, {  # Core: no ORM machinery per call
            "idempotency_key": key, "kind": kind, "subject": subject, "member": member, "feature": feature,
            "period_start": ctx.start, "amount": amount, "tokens": tokens, "cost": cost,
            "buckets": [b.key for b in ctx.buckets], "details": dict(metadata or {}), "created_at": ctx.now,
        })
        try:
            values = self._store.try_add(session, ctx.buckets, amount) if gated else \
                self._store.add(session, ctx.buckets, amount)
        except CounterStoreUnavailable:
            if gated and ctx.definition.policy == "fail_closed":
                raise  # the entry rolls back with the transaction
            session.execute(update(LedgerEntry).where(LedgerEntry.idempotency_key == key).values(applied=False))
            return self._fallback(session, ctx, amount)
        if values is None:  # refused: nothing moved, take the entry back
            session.execute(delete(LedgerEntry).where(LedgerEntry.idempotency_key == key))
            return self._evaluate(session, ctx, amount, refused=True)
        return self._decision(ctx, values[0], amount, True)

    def consume(self, subject: str, feature: str, amount: int = 1, *, member: str | None = None,
                idempotency_key: str | None = None, tokens: int = 0, cost: float = 0.0,
                metadata: dict[str, Any] | None = None) -> Decision:
        """Atomically check and record ``amount`` units: two concurrent calls can never both
        take the last unit. Retrying with the same ``idempotency_key`` never counts twice.

        :raises Conflict: ``idempotency_conflict`` (same key, different request).
        :raises CounterStoreUnavailable: the store is unreachable and the feature fails closed
            (nothing is recorded); a feature failing open is allowed with ``fallback=True``.
        """
        return self._record(subject, feature, _positive(amount), kind="consume", gated=True, member=member,
                            idempotency_key=idempotency_key, tokens=tokens, cost=cost, metadata=metadata)

    def track(self, subject: str, feature: str, amount: int = 1, *, member: str | None = None,
              idempotency_key: str | None = None, tokens: int = 0, cost: float = 0.0,
              metadata: dict[str, Any] | None = None) -> Decision:
        """Record usage without gating (usage-based billing, or a limit gauge going down with a
        negative ``amount``). Journalled when the store is unreachable, whatever the policy."""
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidInput("amount must be a non-zero integer", code="invalid_amount")
        return self._record(subject, feature, amount, kind="track", gated=False, member=member,
                            idempotency_key=idempotency_key, tokens=tokens, cost=cost, metadata=metadata)

    def _move(self, session: Session, keys: list[str], amount: int) -> list[int] | None:
        """Move the counters of a settlement; ``None`` when the store is unreachable (the
        caller journals the move)."""
        try:
            return self._store.add(session, [Bucket(key, None) for key in keys], amount)
        except CounterStoreUnavailable:
            return None

    def refund(self, idempotency_key: str) -> dict[str, Any]:
        """Give back the units of an accepted ``consume`` (the paid work failed). Once only.

        :raises NotFound: ``unknown_idempotency_key``.
        :raises Conflict: ``already_refunded``.
        """
        refund_key = f"refund:{idempotency_key}"
        try:
            with self._transaction() as session:
                entry = session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key,
                                                                 LedgerEntry.kind.in_(("consume", "commit"))))
                if entry is None:
                    raise NotFound(f"no consumption with idempotency key {idempotency_key!r}",
                                   code="unknown_idempotency_key")
                session.execute(_LEDGER_INSERT, {
                    "idempotency_key": refund_key, "kind": "refund", "subject": entry.subject, "member": entry.member,
                    "feature": entry.feature, "period_start": entry.period_start, "amount": -entry.amount,
                    "tokens": -entry.tokens, "cost": -entry.cost, "buckets": entry.buckets, "details": {},
                    "created_at": self._kernel.now(),
                })  # a second refund fails here, before any counter moves
                # A consumption still in the journal is refunded in the journal too.
                values = self._move(session, entry.buckets, -entry.amount) if entry.applied else None
                if values is None:
                    session.execute(update(LedgerEntry).where(LedgerEntry.idempotency_key == refund_key)
                                    .values(applied=False))
                used = values[0] if values else self._used(session, entry.subject, entry.feature,
                                                            entry.period_start, entry.buckets)
                return {"refunded": entry.amount, "feature": entry.feature, "subject": entry.subject,
                        "used": used, "fallback": values is None}
        except IntegrityError:
            raise Conflict("this consumption was already refunded", code="already_refunded") from None

    # -- holds ----------------------------------------------------------------------------------------

    def reserve(self, subject: str, feature: str, estimate: int, *, member: str | None = None,
                ttl: float = 300.0) -> Decision:
        """Hold ``estimate`` units now (they count against the quota at once); settle later with
        :meth:`commit` or :meth:`release`. An expired hold is released by :meth:`release_expired`.
        The decision's ``hold_id`` names the hold when allowed.

        :raises CounterStoreUnavailable: the store is unreachable and the feature fails closed.
        """
        with self._transaction() as session:
            return self.hold_many(session, subject, [(feature, estimate)], member=member, ttl=ttl)[0]

    def reserve_many(self, subject: str, estimates: list[tuple[str, int]], *, member: str | None = None,
                     ttl: float = 300.0) -> list[Decision]:
        """Hold several features' estimates at once, all or none, in one transaction (an AI
        call holds a request, its tokens and its spend). Returns one decision per estimate
        when all are allowed; otherwise the refused decision alone (``[decision]``), and
        nothing is held.

        :raises CounterStoreUnavailable: the store is unreachable and a feature fails closed.
        """
        with self._transaction() as session:
            return self.hold_many(session, subject, estimates, member=member, ttl=ttl)

    def hold_many(self, session: Session, subject: str, estimates: list[tuple[str, int]], *,
                  member: str | None = None, ttl: float = 300.0,
                  planned: tuple[Catalog, Plan, Plan | None, Any] | None = None,
                  skip_unlimited: bool = False) -> list[Decision]:
        """:meth:`reserve_many` in ``session``'s transaction (a caller batching its writes, such
        as the AI service's group commit): all or none, one decision per estimate, or the
        refused decision alone (``[decision]``) with nothing held and every counter this call
        moved moved back. Core statements: one conditional counter move per bucket and one
        multi-row insert of the holds. ``planned``: :meth:`plan_state`'s answer read in this
        transaction. The holds count once the transaction commits.

        ``skip_unlimited``: a feature granted without any limit (no quota, no member cap) is
        answered allowed with ``hold_id=None`` and nothing written, since there is nothing to
        protect; the caller records the actual usage afterwards with :meth:`record_many`.

        :raises CounterStoreUnavailable: the store is unreachable and a feature fails closed;
            ``session``'s transaction must then roll back (so must it on any other error).
        """
        for _feature, estimate in estimates:
            _positive(estimate, "estimate")
        _valid_ttl(ttl)
        if not subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        planned = planned or self._plan_of(session, subject, self._kernel.now())
        store = self._store
        decisions: list[Decision] = []
        rows: list[dict[str, Any]] = []
        moved: list[tuple[list[Bucket], int]] = []
        journalled: list[str] = []  # holds inserted at once (store unreachable): their fallback reads them
        refusal: Decision | None = None
        for feature, estimate in estimates:
            ctx = self._context(session, subject, feature, member, planned)
            if not self._granted(ctx):
                refusal = self._evaluate(session, ctx, estimate)
                break
            if skip_unlimited and ctx.definition.kind != "boolean" and all(b.limit is None for b in ctx.buckets):
                decisions.append(self._decision(ctx, 0, estimate, True))  # ``used`` not read: not needed
                continue
            row = {"id": f"hold_{uuid.uuid4().hex}", "subject": subject, "member": member, "feature": feature,
                   "period_start": ctx.start, "amount": estimate, "buckets": [b.key for b in ctx.buckets],
                   "status": "held", "expires_at": ctx.now + timedelta(seconds=ttl), "created_at": ctx.now,
                   "settled_at": None, "applied": True}
            try:
                values = store.try_add(session, ctx.buckets, estimate)
            except CounterStoreUnavailable:
                if ctx.definition.policy == "fail_closed":
                    raise
                row["applied"] = False  # counted by the journal once the store is back
                session.connection().execute(_HOLD_INSERT, row)
                journalled.append(row["id"])
                decision = self._fallback(session, ctx, estimate)
            else:
                if values is None:
                    refusal = self._evaluate(session, ctx, estimate, refused=True)
                    break
                moved.append((ctx.buckets, estimate))
                rows.append(row)
                decision = self._decision(ctx, values[0], estimate, True)
            decision.hold_id = row["id"]
            decisions.append(decision)
        if refusal is not None:  # all or none: give back what this call took
            for buckets, estimate in reversed(moved):
                store.add(session, [Bucket(b.key, None) for b in buckets], -estimate)
            if journalled:
                session.connection().execute(delete(Hold).where(Hold.id.in_(journalled)))
            return [refusal]
        if rows:
            session.connection().execute(_HOLD_INSERT, rows)
        return decisions

    def admit_unlimited(self, subject: str, estimates: list[tuple[str, int]], *, member: str | None = None,
                        planned: tuple[Catalog, Plan, Plan | None, Any]) -> list[Decision] | None:
        """:meth:`hold_many` with ``skip_unlimited`` decided from ``planned`` (:meth:`plan_state`)
        alone, without the database: allowed decisions (``hold_id=None``) when every estimate's
        feature is granted without any limit, else ``None`` (a limit to protect, or a refusal to
        explain: ask :meth:`hold_many`). Safe on an event loop."""
        decisions = []
        for feature, estimate in estimates:
            _positive(estimate, "estimate")
            ctx = self._context(None, subject, feature, member, planned)
            if (ctx is None or not self._granted(ctx) or ctx.definition.kind == "boolean"
                    or any(b.limit is not None for b in ctx.buckets)):
                return None
            decisions.append(self._decision(ctx, 0, estimate, True))
        return decisions

    def record_many(self, session: Session, subject: str,
                    items: list[tuple[str, int, int, float, dict[str, Any] | None, str]], *,
                    member: str | None = None,
                    planned: tuple[Catalog, Plan, Plan | None, Any] | None = None) -> list[int | None]:
        """Record usage already admitted (by :meth:`hold_many` with ``skip_unlimited``: a
        feature without limits) in ``session``'s transaction: per item ``(feature, amount,
        tokens, cost, metadata, idempotency_key)`` a ``consume`` ledger entry and an
        unconditional counter move (journalled when the store is unreachable), in one
        multi-row insert (with the SQL counter store, the counter moves are one multi-row
        UPSERT too). Returns each meter's new value when the store answered it (``None`` with
        the SQL store, and when journalled). Not a gate: use :meth:`consume` to check and
        record at once.

        :raises InvalidInput: ``not_countable`` (a boolean feature), ``invalid_amount``.
        :raises IntegrityError: an idempotency key already recorded (the transaction must roll back).
        """
        if not subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        planned = planned or self._plan_of(session, subject, self._kernel.now())
        store = self._store
        batched = isinstance(store, SQLCounterStore) and session.get_bind().dialect.name in _COUNTER_ADDS
        entries, used, moves = [], [], {}
        for feature, amount, tokens, cost, metadata, key in items:
            _valid_actual(amount)
            ctx = self._context(session, subject, feature, member, planned)
            if ctx.definition.kind == "boolean":
                raise InvalidInput(f"{feature} is a boolean feature: check it, there is nothing to count",
                                   code="not_countable")
            keys = [b.key for b in ctx.buckets]
            if batched:  # the SQL store: every move in one statement below, in this transaction
                for bucket_key in keys:
                    moves[bucket_key] = moves.get(bucket_key, 0) + amount
                values: list[int] | None = []
            else:
                values = self._move(session, keys, amount) if amount else []
            entries.append({"idempotency_key": key, "kind": "consume", "subject": subject, "member": member,
                            "feature": feature, "period_start": ctx.start, "amount": amount, "tokens": tokens,
                            "cost": cost, "buckets": keys, "details": dict(metadata or {}), "created_at": ctx.now,
                            "applied": values is not None})
            used.append(values[0] if values else None)
        if moves := {k: v for k, v in moves.items() if v}:
            now = utcnow()
            session.connection().execute(_COUNTER_ADDS[session.get_bind().dialect.name],
                                         [{"key": k, "value": v, "updated_at": now} for k, v in moves.items()])
        if entries:
            session.connection().execute(_LEDGER_INSERT, entries)
        return used

    def _claim(self, session: Session, hold_ids: list[str], status: str) -> dict[str, Any]:
        """Claim held holds for ``status`` in one statement; return their rows by id (with
        ``applied``, read in the same statement, so the journal cannot move them meanwhile).

        :raises NotFound: ``unknown_hold``.
        :raises Conflict: ``hold_settled`` (settled before, or twice in this call); the
            transaction must then roll back.
        """
        connection = session.connection()
        claimed = {row.id: row for row in connection.execute(
            _CLAIM_HOLDS, {"ids": hold_ids, "new_status": status, "settled": self._kernel.now()})}
        if len(claimed) == len(hold_ids):
            return claimed
        statuses = dict(connection.execute(_HOLD_STATUS, {"ids": hold_ids}).all())
        for hold_id in hold_ids:
            if hold_id not in statuses:
                raise NotFound(f"no hold {hold_id}", code="unknown_hold")
            if hold_id not in claimed:
                raise Conflict(f"hold {hold_id} is already {statuses[hold_id]}", code="hold_settled")
        duplicate = next(h for h in hold_ids if hold_ids.count(h) > 1)
        raise Conflict(f"hold {duplicate} is settled twice in one call", code="hold_settled")

    def commit(self, hold_id: str, actual: int, *, tokens: int = 0, cost: float = 0.0,
               metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Settle a hold at the ``actual`` units used (0 or more): the difference with the
        estimate is given back, or added (the work was done). Recorded in the ledger once;
        journalled when the store is unreachable."""
        with self._transaction() as session:
            return self.commit_holds(session, [(hold_id, actual, tokens, cost, metadata)])[0]

    def commit_many(self, settlements: list[tuple[str, int, int, float, dict[str, Any] | None]]) -> list[dict[str, Any]]:
        """:meth:`commit` several holds in one transaction; each settlement is
        ``(hold_id, actual, tokens, cost, metadata)``."""
        with self._transaction() as session:
            return self.commit_holds(session, settlements)

    def commit_holds(self, session: Session, settlements: list[tuple[str, int, int, float, dict[str, Any] | None]],
                     *, usage: Any = None) -> list[dict[str, Any]]:
        """:meth:`commit_many` in ``session``'s transaction, in Core statements: one UPDATE ...
        RETURNING claims every hold, one counter move per hold whose actual differs from what
        the store counts, one multi-row ledger insert (a ``commit`` entry keyed ``hold:<id>``
        at the actual amount per hold, in the given order). Journalled when the store is
        unreachable, like :meth:`commit`. Returns :meth:`commit`'s answer per settlement.

        :param usage: the hold ids whose answer needs ``used`` even when no counter moved (a
            read each); ``None``: all of them. For the others ``used`` is ``None`` then.
        :raises NotFound: ``unknown_hold``.
        :raises Conflict: ``hold_settled``. On either error nothing of the call is committed
            once ``session``'s transaction (or savepoint) rolls back, as it must.
        """
        for settlement in settlements:
            _valid_actual(settlement[1])
        claimed = self._claim(session, [s[0] for s in settlements], "committed")
        connection = session.connection()
        now = self._kernel.now()
        entries, moves = [], []
        for hold_id, actual, tokens, cost, metadata in settlements:
            row = claimed[hold_id]
            counted = bool(row.applied)
            delta = actual - (row.amount if counted else 0)
            values = self._move(session, row.buckets, delta) if delta else []
            journalled = values is None
            # Unreachable: the ledger entry (+actual) waits in the journal, and so does taking the
            # estimate back (the hold's flag flips). A hold never counted is in step once settled.
            applied = (not counted) if journalled else True
            if applied != counted:
                connection.execute(_HOLD_APPLIED, {"hold_id": hold_id, "applied": applied})
            entries.append({"idempotency_key": f"hold:{hold_id}", "kind": "commit", "subject": row.subject,
                            "member": row.member, "feature": row.feature, "period_start": row.period_start,
                            "amount": actual, "tokens": tokens, "cost": cost, "buckets": row.buckets,
                            "details": dict(metadata or {}), "created_at": now, "applied": not journalled})
            moves.append((row, actual, values))
        connection.execute(_LEDGER_INSERT, entries)
        results = []
        for row, actual, values in moves:
            if values:
                used = values[0]
            elif usage is None or row.id in usage:
                used = self._used(session, row.subject, row.feature, row.period_start, row.buckets)
            else:
                used = None
            results.append({"hold_id": row.id, "committed": actual, "released": max(row.amount - actual, 0),
                            "used": used, "fallback": values is None})
        return results

    def release(self, hold_id: str) -> dict[str, Any]:
        """Give a hold's units back (the work did not happen); journalled when the store is
        unreachable."""
        with self._transaction() as session:
            return self.release_holds(session, [hold_id])[0]

    def release_holds(self, session: Session, hold_ids: list[str], *, usage: bool = True) -> list[dict[str, Any]]:
        """:meth:`release` several holds in ``session``'s transaction (one UPDATE ... RETURNING
        claims them all, then a counter move per hold the store counts); :meth:`release`'s
        answer per hold. ``usage=False`` leaves ``used`` out (``None``) where no counter moved.

        :raises NotFound: ``unknown_hold``.
        :raises Conflict: ``hold_settled``; the transaction must then roll back.
        """
        claimed = self._claim(session, list(hold_ids), "released")
        connection = session.connection()
        results = []
        for hold_id in hold_ids:
            row = claimed[hold_id]
            counted = bool(row.applied)
            values = self._move(session, row.buckets, -row.amount) if counted else []
            journalled = values is None
            if (not journalled) != counted:
                connection.execute(_HOLD_APPLIED, {"hold_id": hold_id, "applied": not journalled})
            if values:
                used = values[0]
            elif usage:
                used = self._used(session, row.subject, row.feature, row.period_start, row.buckets)
            else:
                used = None
            results.append({"hold_id": hold_id, "released": row.amount, "used": used, "fallback": journalled})
        return results

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

    # -- journal, rebuild, reconcile ------------------------------------------------------------------

    def _totals(self, session: Session, *, pending: bool, now: datetime | None = None,
                meter: tuple[str, str, datetime] | None = None) -> dict[str, int]:
        """Counter values computed from SQL, by key: the ledger's ``amount`` summed over the
        ``buckets`` each entry moved (kinds consume, track, refund, commit), plus the holds.

        :param pending: ``True``: the usage recorded (every entry, and the holds still held);
            ``False``: what the store must hold now, leaving out the moves that wait in the
            journal (entries not applied; holds whose flag says the store is not in step).
        :param now: only the counters of the quota periods containing ``now``.
        :param meter: ``(subject, feature, period start)``: only that meter's entries and holds.
        """
        entries = [LedgerEntry.kind.in_(COUNTED_KINDS)]
        held = Hold.status == "held"
        holds = [held] if pending else [or_(and_(held, Hold.applied == true()), and_(~held, Hold.applied == false()))]
        if not pending:
            entries.append(LedgerEntry.applied == true())
        if meter is not None:
            subject, feature, start = meter
            entries += [LedgerEntry.subject == subject, LedgerEntry.feature == feature,
                        LedgerEntry.period_start == start]
            holds += [Hold.subject == subject, Hold.feature == feature, Hold.period_start == start]
        if now is not None:
            starts = sorted({period_start(period, now) for period in QUOTA_PERIODS})
            entries.append(LedgerEntry.period_start.in_(starts))
            holds.append(Hold.period_start.in_(starts))
        totals: dict[str, int] = {}
        for model, conditions in ((LedgerEntry, entries), (Hold, holds)):
            keys = cast(model.buckets, Text)
            for encoded, amount in session.execute(select(keys, func.sum(model.amount)).where(*conditions)
                                                   .group_by(keys)):
                for key in json.loads(encoded):
                    totals[key] = totals.get(key, 0) + int(amount or 0)
        if now is not None:
            totals = {key: value for key, value in totals.items() if _is_current(key, now)}
        return totals

    def _lock(self, session: Session, store: Any) -> None:
        """Serialise rebuilds and reconciliations across processes, and with the SQL store
        keep writers out while the ledger and the counters are compared (so the comparison is
        exact): a table lock on PostgreSQL, the database's write lock on SQLite."""
        if session.get_bind().dialect.name == "postgresql":
            if isinstance(store, SQLCounterStore):
                session.execute(text("LOCK TABLE vendo_usage_counters IN SHARE ROW EXCLUSIVE MODE"))
            else:
                session.execute(text("SELECT pg_advisory_xact_lock(hashtext('vendo.counters.maintenance'))"))
        else:
            session.execute(text("DELETE FROM vendo_usage_counters WHERE 1 = 0"))  # takes the write lock

    def apply_journal(self, *, batch: int = 500) -> int:
        """Move into the counter store the usage recorded while it was unreachable (ledger
        entries and holds not ``applied``); return how many rows were applied.

        Idempotent and safe from several processes at once: each row is claimed (its flag
        set) in the transaction that moves the store, and the move is undone if that
        transaction does not commit.

        :raises CounterStoreUnavailable: still unreachable (what was applied stays applied).
        """
        applied = 0
        for _ in range(10_000):  # bounded: each round applies or sees applied up to ``batch`` rows per table
            with self._kernel.session() as session:
                entries = session.execute(select(LedgerEntry.id, LedgerEntry.buckets)
                                          .where(LedgerEntry.applied == false())
                                          .order_by(LedgerEntry.id).limit(batch)).all()
                holds = session.execute(select(Hold.id, Hold.buckets).where(Hold.applied == false())
                                        .order_by(Hold.id).limit(batch)).all()
            if not entries and not holds:
                break
            for model, rows in ((LedgerEntry, entries), (Hold, holds)):
                groups: dict[tuple[str, ...], list[Any]] = {}
                for row_id, keys in rows:
                    groups.setdefault(tuple(keys), []).append(row_id)
                for keys, ids in groups.items():
                    applied += self._apply(model, list(keys), ids)
            if len(entries) < batch and len(holds) < batch:
                break
        return applied

    def _apply(self, model: Any, keys: list[str], ids: list[Any]) -> int:
        """Claim the pending rows ``ids`` of one set of buckets and move the store by their sum."""
        with self._transaction() as session:
            claim = update(model).where(model.id.in_(ids), model.applied == false()).values(applied=True)
            if model is Hold:  # a held hold adds its amount, a settled one takes it back
                rows = session.execute(claim.returning(Hold.status, Hold.amount)
                                       .execution_options(synchronize_session=False)).all()
                total = sum(amount if status == "held" else -amount for status, amount in rows)
            else:
                rows = session.execute(claim.returning(LedgerEntry.amount)
                                       .execution_options(synchronize_session=False)).all()
                total = sum(amount for (amount,) in rows)
            if total and keys:
                self._store.add(session, [Bucket(key, None) for key in keys], total)
            return len(rows)

    def rebuild_counters(self, *, all_periods: bool = False, only_if_lost: bool = False) -> int:
        """Recompute counters from the ledger and the holds and write them into the active
        store (``vendo usage rebuild``), then apply the journal; return how many were written.

        By default the counters of the current periods (what decisions read); ``all_periods``
        rewrites every counter the ledger knows. Rebuilding while calls are being recorded
        can miss those still in flight: run :meth:`reconcile` afterwards.

        :param only_if_lost: do nothing unless the store reports it lost its data.
        :raises CounterStoreUnavailable: the store is unreachable.
        """
        store = self._store
        with self._rebuilding, self._transaction() as session:
            self._lock(session, store)
            if only_if_lost:
                try:
                    store.read(session, [])
                    return 0
                except CounterStoreUnavailable as exc:
                    if exc.details.get("reason") != "lost":
                        raise
            values = self._totals(session, pending=False, now=None if all_periods else self._kernel.now())
            store.overwrite(session, values)
        log.warning("rebuilt %d counter(s) of the %s store from the ledger", len(values),
                    getattr(store, "name", type(store).__name__))
        self.apply_journal()
        return len(values)

    def drift(self, *, all_periods: bool = False) -> dict[str, tuple[int, int]]:
        """Counters whose store value differs from the ledger's: ``{key: (store, ledger)}``
        (current periods unless ``all_periods``; moves waiting in the journal left out).

        :raises CounterStoreUnavailable: the store is unreachable.
        """
        with self._kernel.session() as session:
            return self._drift(session, all_periods=all_periods)

    def _drift(self, session: Session, *, all_periods: bool, keys: list[str] | None = None) -> dict[str, tuple[int, int]]:
        # The ledger first, then the store: a call in flight (store moved, ledger not committed
        # yet) can only show as drift, never hide one.
        expected = self._totals(session, pending=False, now=None if all_periods else self._kernel.now())
        names = sorted(set(expected) | set(keys or ()))
        found: dict[str, tuple[int, int]] = {}
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            for key, value in zip(chunk, self._store.read(session, chunk)):
                if value != expected.get(key, 0):
                    found[key] = (value, expected.get(key, 0))
        return found

    def reconcile(self, *, fix: bool = True, all_periods: bool = False, rounds: int = 3, settle: float = 0.5,
                  on_drift: Callable[[str, int, int], None] | None = None) -> list[str]:
        """Compare the store with the ledger and fix what drifted (``vendo usage reconcile``);
        return the keys fixed (or found, with ``fix=False``).

        The journal is applied first. With the SQL store, or any store with a SQLite
        database, the comparison runs with writers held off, so it is exact. With a store
        outside a PostgreSQL database a call in flight shows as transient drift: a key is
        fixed only when its drift is the same in ``rounds`` comparisons ``settle`` seconds
        apart. A fix adds the difference (never overwrites), so calls recorded meanwhile count.

        :param on_drift: called with ``(key, store value, ledger value)`` for each key reported.
        :raises CounterStoreUnavailable: the store is unreachable.
        """
        self.apply_journal()
        store = self._store
        with self._transaction() as session:
            self._lock(session, store)
            exact = isinstance(store, SQLCounterStore) or session.get_bind().dialect.name != "postgresql"
            found = self._drift(session, all_periods=all_periods)
            for _ in range(0 if exact else max(rounds, 1) - 1):
                if not found:
                    break
                time.sleep(settle)  # each statement reads what committed meanwhile (read committed)
                again = self._drift(session, all_periods=all_periods, keys=list(found))
                found = {key: values for key, values in again.items()
                         if key in found and values[0] - values[1] == found[key][0] - found[key][1]}
            for key, (have, want) in sorted(found.items()):
                if on_drift is not None:
                    on_drift(key, have, want)
                if fix:
                    store.add(session, [Bucket(key, None)], want - have)
        if found:
            log.warning("%s %d drifting counter(s): %s", "fixed" if fix else "found", len(found),
                        ", ".join(sorted(found)))
        return sorted(found)

    def maintain(self) -> int:
        """What the server runs every few seconds: restore a store that lost its data from
        the ledger, apply the journal, then release holds past their expiry; return the
        journal rows applied.

        :raises CounterStoreUnavailable: the store is unreachable.
        """
        try:
            self._store.read(None, [])
        except CounterStoreUnavailable as exc:
            if exc.details.get("reason") != "lost":
                raise
            self.rebuild_counters(only_if_lost=True)
        applied = self.apply_journal()
        self.release_expired()
        return applied

    # -- reading ----------------------------------------------------------------------------------------

    def usage(self, subject: str, *, member: str | None = None) -> dict[str, Any]:
        """Every countable feature of the subject's plan with used, limit, resets_at and an 80% warning."""
        with self._kernel.session(read_only=True) as session:
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
        with self._kernel.session(read_only=True) as session:
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
        with self._kernel.session(read_only=True) as session:
            return [{"feature": f, "period_start": start.isoformat(), "units": int(units or 0),
                     "tokens": int(tokens or 0), "cost": float(cost or 0.0), "records": count}
                    for f, start, units, tokens, cost, count in session.execute(query)]


def _assignments_rolled_back(session: Session, previous_transaction: Any) -> None:
    """The assignments of a rolled-back transaction never reached the cache: forget them (not
    on a savepoint's rollback: the outer transaction may still commit earlier assignments)."""
    if previous_transaction.parent is None:
        session.info.pop(_ASSIGNED, None)


def _valid_ttl(ttl: float) -> None:
    if ttl <= 0 or ttl > 86_400:
        raise InvalidInput("ttl is 1 second to 1 day", code="invalid_ttl")


def _valid_actual(actual: int) -> None:
    if not isinstance(actual, int) or actual < 0:
        raise InvalidInput("actual must be an integer, 0 or more", code="invalid_amount")


def _compensate(undo: list[Callable[[], None]]) -> None:
    """Run the undo actions of a transaction that did not commit, newest first."""
    while undo:
        action = undo.pop()
        try:
            action()
        except Exception:
            log.error("could not undo a counter move of a rolled-back transaction: the counter is off by "
                      "that move until `vendo usage reconcile`", exc_info=True)


def _is_current(key: str, now: datetime) -> bool:
    """Whether a quota counter key belongs to the period containing ``now``."""
    period = counter_period(key)
    if period not in QUOTA_PERIODS:
        return False
    return key.rsplit(":", 1)[1] == period_start(period, now).strftime(_STAMP)


def _grants(plan: Plan, feature: str) -> bool:
    grant = plan.features.get(feature)
    return grant is not None and grant.enabled and (grant.limit is None or grant.limit > 0)
