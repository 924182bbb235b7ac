"""Request rate limits (``kernel.rate_limits``): fixed windows counted in the counter store.

The catalog declares limits per plan (``rate_limits = { per_minute = 60, per_day = 1000 }``)
and named tiers for API keys (``[rate_limit_tiers.partner]``); see
:mod:`vendo.entitlements.catalog`. Who is counted (the *scope*):

- an API key (``principal.method == "api_key"``) on its own, by ``principal.credential``; a key
  whose ``rate_limit_tier`` attribute names a tier of the catalog gets that tier's limits,
  any other key its workspace plan's;
- any other caller by its subject (``principal.subject``, or the subject string given).

Which limits apply, when no API-key tier does: the plan of the subject the request acts on
(``subject=``; by default the principal's workspace, else its subject), read from the
*current* catalog. A subject without limits (plan without ``rate_limits``, no catalog loaded)
is not counted at all.

Every window is a counter of the active counter store (``kernel.providers.get("counters")``)
keyed ``rl:{scope}:{window}:{window start, epoch seconds}``; windows are aligned on the epoch
in UTC (a day window resets at midnight UTC). A hit adds to the counters of all windows at
once with the store's atomic multi-bucket ``try_add``: either every window takes it or none
does, so a refused hit counts nowhere. With the SQL store the counters are rows of the shared
database, with a store plugin (Redis) keys of the shared server: limits hold across processes
and machines either way. If the store is unavailable (it raises
:class:`~vendo.errors.CounterStoreUnavailable`), the limiter fails open: the request is
allowed, unlimited, and the outage logged; a rate limiter outage must not take the product
down.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import delete, select

from vendo.capabilities import COMPENSATIONS, Bucket, Principal
from vendo.entitlements.catalog import WINDOWS, RateLimits, current_catalog
from vendo.entitlements.service import RATE_LIMITED
from vendo.errors import CounterStoreUnavailable, InvalidInput, NotFound, VendoError

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.rate_limits")

#: Prefix of every rate-limit counter key.
KEY_PREFIX = "rl:"


@dataclass(frozen=True)
class RateLimitResult:
    """The answer of one hit: allowed or not, and the most constraining window.

    ``limit``, ``remaining``, ``reset_at`` and ``window`` describe the window that decides:
    when allowed, the one with the fewest requests left (on a tie, the one resetting last);
    when refused, the exhausted one resetting last (nothing is allowed before it resets).
    They are ``None`` when nothing limits the caller. ``retry_after`` (seconds) is set on
    refusals; ``degraded`` says the counter store failed and the hit was let through.
    """

    allowed: bool
    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    window: str | None = None
    scope: str = ""
    tier: str | None = None
    plan: str | None = None
    retry_after: int | None = None
    degraded: bool = False

    @property
    def limited(self) -> bool:
        """Whether any window limits the caller (otherwise there are no headers to send)."""
        return self.limit is not None

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (epoch seconds of the reset of
        the deciding window), plus ``Retry-After`` on a refusal; empty when unlimited."""
        if self.limit is None or self.reset_at is None:
            return {}
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                   "X-RateLimit-Reset": str(int(self.reset_at.timestamp()))}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (``reset_at`` as ISO 8601)."""
        return {"allowed": self.allowed, "limit": self.limit, "remaining": self.remaining,
                "reset_at": self.reset_at.isoformat() if self.reset_at else None, "window": self.window,
                "tier": self.tier, "plan": self.plan, "retry_after": self.retry_after}


class RateLimited(VendoError):
    """A request over its rate limit: 429 ``RATE_LIMITED`` with ``Retry-After`` and the
    ``X-RateLimit-*`` headers; ``details`` is the :class:`RateLimitResult`."""

    def __init__(self, result: RateLimitResult) -> None:
        super().__init__(f"rate limit exceeded: {result.limit} requests per {result.window}; "
                         f"retry in {result.retry_after} s", code=RATE_LIMITED, status_code=429,
                         details=result.to_dict())
        self.result = result
        self.headers = result.headers()


@dataclass(frozen=True)
class RateLimitPolicy:
    """What limits a caller: its counter ``scope``, the ``limits`` that apply (``None``:
    unlimited) and where they come from (an API-key ``tier``, or a ``plan``)."""

    scope: str
    limits: RateLimits | None
    tier: str | None
    plan: str | None


@dataclass(frozen=True)
class _Span:
    """One window of one hit: its counter key, limit and reset."""

    window: str
    limit: int
    key: str
    reset_at: datetime


def scope_of(who: Principal | str) -> str:
    """The counter scope of a caller: ``key:{credential}`` for an API key, else ``sub:{subject}``.

    :raises InvalidInput: ``invalid_subject`` (empty subject).
    """
    if isinstance(who, Principal):
        if who.method == "api_key" and who.credential:
            return f"key:{who.credential}"
        who = who.subject
    if not isinstance(who, str) or not who:
        raise InvalidInput("a rate limit needs a principal or a subject", code="invalid_subject")
    return f"sub:{who}"


class RateLimiter:
    """Fixed-window rate limits per API key or subject (see the module docstring)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    @property
    def _store(self) -> Any:
        return self._kernel.providers.get("counters")

    # -- policy -----------------------------------------------------------------------------------

    def policy(self, who: Principal | str, *, subject: str | None = None) -> RateLimitPolicy:
        """The limits of a caller: the API-key tier's when the key's ``rate_limit_tier`` is
        declared in the catalog, else those of the plan of ``subject`` (default: the
        principal's workspace, else its subject). ``limits`` is ``None`` when nothing limits
        the caller (no catalog loaded, or a plan without ``rate_limits``)."""
        scope = scope_of(who)
        try:
            catalog = current_catalog(self._kernel)
        except NotFound as exc:
            if exc.code != "no_catalog":
                raise
            return RateLimitPolicy(scope, None, None, None)
        if isinstance(who, Principal):
            if who.method == "api_key":
                tier = who.attributes.get("rate_limit_tier")
                if isinstance(tier, str) and tier in catalog.rate_limit_tiers:
                    return RateLimitPolicy(scope, catalog.rate_limit_tiers[tier], tier, None)
            target = subject or who.workspace or who.subject
        else:
            target = subject or who
        plan_id = self._kernel.entitlements.plan(target).id
        plan = catalog.plans.get(plan_id) or catalog.default_plan  # a plan gone from the current catalog
        return RateLimitPolicy(scope, plan.rate_limits, None, plan.id)

    @staticmethod
    def _spans(policy: RateLimitPolicy, now: datetime) -> list[_Span]:
        windows = policy.limits.windows() if policy.limits is not None else []
        epoch = math.floor(now.timestamp())
        spans = []
        for window, seconds, limit in windows:
            start = epoch - epoch % seconds
            spans.append(_Span(window, limit, f"{KEY_PREFIX}{policy.scope}:{window}:{start}",
                               datetime.fromtimestamp(start + seconds, timezone.utc)))
        return spans

    # -- hits -------------------------------------------------------------------------------------

    def hit(self, who: Principal | str, *, subject: str | None = None, now: datetime | None = None,
            cost: int = 1) -> RateLimitResult:
        """Count one request (``cost`` of them) against every window of the caller, if all of
        them have room; otherwise count nothing and answer refused.

        :param who: a :class:`~vendo.Principal` (an API key is counted by its credential) or a
            subject id.
        :param subject: the subject the request acts on, whose plan's limits apply.
        :param now: the time of the request (default: the kernel's clock).
        :raises InvalidInput: ``invalid_subject``, ``invalid_amount``.
        """
        if not isinstance(cost, int) or isinstance(cost, bool) or cost <= 0:
            raise InvalidInput("cost must be a positive integer", code="invalid_amount")
        now = now or self._kernel.now()
        policy = self.policy(who, subject=subject)
        spans = self._spans(policy, now)
        if not spans:
            return RateLimitResult(True, scope=policy.scope, tier=policy.tier, plan=policy.plan)
        store = self._store
        buckets = [Bucket(span.key, span.limit) for span in spans]
        undo: list[Callable[[], None]] = []  # moves a store outside the database registered
        try:
            with self._kernel.session() as session:
                session.info[COMPENSATIONS] = undo
                values = store.try_add(session, buckets, cost)
                allowed = values is not None
                if values is None:
                    values = store.read(session, [span.key for span in spans])
        except BaseException as exc:
            _compensate(undo)
            if not isinstance(exc, CounterStoreUnavailable):
                raise
            log.error("rate limiter: the counter store is unavailable (%s); allowing the request of %s unlimited",
                      exc.message, policy.scope)  # fail open, loudly
            return RateLimitResult(True, scope=policy.scope, tier=policy.tier, plan=policy.plan, degraded=True)
        return _result(policy, spans, values, allowed, cost, now)

    def peek(self, who: Principal | str, *, subject: str | None = None,
             now: datetime | None = None) -> RateLimitResult:
        """What :meth:`hit` would answer now for one request, counting nothing.

        :raises CounterStoreUnavailable: the store cannot be read.
        """
        now = now or self._kernel.now()
        policy = self.policy(who, subject=subject)
        spans = self._spans(policy, now)
        if not spans:
            return RateLimitResult(True, scope=policy.scope, tier=policy.tier, plan=policy.plan)
        with self._kernel.session() as session:
            values = self._store.read(session, [span.key for span in spans])
        allowed = all(value + 1 <= span.limit for span, value in zip(spans, values))
        return _result(policy, spans, values, allowed, 1, now)

    def enforce(self, who: Principal | str, *, subject: str | None = None, now: datetime | None = None,
                cost: int = 1) -> RateLimitResult:
        """:meth:`hit`, raising on a refusal.

        :raises RateLimited: 429 ``RATE_LIMITED``.
        """
        result = self.hit(who, subject=subject, now=now, cost=cost)
        if not result.allowed:
            raise RateLimited(result)
        return result

    # -- housekeeping -------------------------------------------------------------------------------

    def purge_expired(self, now: datetime | None = None, *, batch: int = 500) -> int:
        """Delete the rate-limit counters of windows that have ended; return how many.

        Only the SQL counter store keeps them forever (a store plugin expires its keys
        itself); with another store this does nothing and returns 0.
        """
        from vendo.entitlements.models import Counter
        from vendo.entitlements.store import SQLCounterStore

        if not isinstance(self._store, SQLCounterStore):
            return 0
        epoch = math.floor((now or self._kernel.now()).timestamp())
        deleted, after = 0, ""
        while True:
            with self._kernel.session() as session:
                keys = session.scalars(select(Counter.key).where(Counter.key.like(f"{KEY_PREFIX}%"),
                                                                 Counter.key > after)
                                       .order_by(Counter.key).limit(batch)).all()
                if not keys:
                    return deleted
                after = keys[-1]
                expired = [key for key in keys if _ended(key, epoch)]
                if expired:
                    session.execute(delete(Counter).where(Counter.key.in_(expired)))
                    deleted += len(expired)


def _compensate(undo: list[Callable[[], None]]) -> None:
    """Run, newest first, the undo actions a store registered with :func:`vendo.on_rollback`
    in a transaction that did not commit."""
    while undo:
        action = undo.pop()
        try:
            action()
        except Exception:
            log.error("rate limiter: could not undo a counter move of a failed hit; that window is off by it "
                      "until it ends", exc_info=True)


def _ended(key: str, epoch: int) -> bool:
    """Whether the window of a rate-limit counter key ended at or before ``epoch``."""
    parts = key[len(KEY_PREFIX):].rsplit(":", 2)
    if len(parts) != 3 or parts[1] not in WINDOWS or not parts[2].isdigit():
        return False
    return int(parts[2]) + WINDOWS[parts[1]] <= epoch


def _result(policy: RateLimitPolicy, spans: list[_Span], values: list[int], allowed: bool, cost: int,
            now: datetime) -> RateLimitResult:
    """The deciding window of a hit (see :class:`RateLimitResult`)."""
    pairs = list(zip(spans, values))
    if allowed:
        span, value = min(pairs, key=lambda pair: (pair[0].limit - pair[1], -pair[0].reset_at.timestamp()))
        retry_after = None
    else:
        exhausted = [pair for pair in pairs if pair[1] + cost > pair[0].limit]
        span, value = max(exhausted or pairs, key=lambda pair: pair[0].reset_at)
        retry_after = max(1, math.ceil((span.reset_at - now) / timedelta(seconds=1)))
    return RateLimitResult(allowed, limit=span.limit, remaining=max(span.limit - value, 0), reset_at=span.reset_at,
                           window=span.window, scope=policy.scope, tier=policy.tier, plan=policy.plan,
                           retry_after=retry_after)
