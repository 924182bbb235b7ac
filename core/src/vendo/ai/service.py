"""The AI service (``kernel.ai``): chat, streaming, embeddings and models, gated and metered.

Every call goes through the same steps, in-process or from the ``/v1`` routes:

1. **Model**: the name is resolved through the catalog's ``[ai] aliases``, then routed to
   the AI provider serving it (404 ``model_not_found``). A plan's ``[plans.<id>.ai] models``
   allow-list refuses others (402 ``TIER_LIMITED`` naming the plan to upgrade to).
2. **Key**: the workspace's own key for the model's vendor (BYOK vault) when it has one, else
   the operator's key when the plan says ``managed = true``, else 402 ``TIER_LIMITED``.
3. **Reserve** before the call, with :meth:`Entitlements.hold_many`: one unit of the call's
   feature (``ai_chat``, ``ai_embeddings``, or the integrator's ``semantic_search``...); and,
   for calls on the operator's key, the estimated tokens (prompt tokens counted by the
   provider + ``max_tokens``) on the catalog's token feature and the estimated spend in
   micro-dollars on its spend feature, when the catalog declares them; and the API key's
   monthly budget when it has one. A refusal releases what was reserved: 429 with the
   quota's reason code, 402 for plan limits. A meter the plan grants without any limit is
   checked (granted) but not held: there is no quota to protect.
4. **Settle**: after the call each hold is committed at the actual usage (a ``commit`` ledger
   entry), and each meter without limits is recorded at the actual usage (a ``consume`` entry
   keyed ``<call id>:<feature>``, :meth:`Entitlements.record_many`); the entry of the call's
   feature records tokens, cost, model, latency, vendor, BYOK or not. When the vendor fails
   every hold is released: nothing is consumed. Crossing 80% of a token or spend
   quota, or of an API key's budget, publishes ``ai.budget.warning`` through the outbox.

Steps 1 to 3 are one write, and step 4 another, of the service's :class:`MeterWriter`: the
writes of concurrent calls share one transaction (group commit; a refusal leaves nothing behind, so
no savepoint is needed per call), and a
caller continues only once the transaction holding its write committed (see
:mod:`vendo.ai.writer`). The plan and the route are read again inside the admission write;
the prompt is counted before it, on the event loop, with the model resolved through the plan
cache's catalog.

Streams never overspend: the vendor is asked for at most the reserved completion tokens, and
a vendor that sends more content chunks than reserved (each chunk carries at least one token)
is cut; the in-process stream then raises ``reservation_exceeded`` (the ``/v1`` route sends a
final error event). BYOK calls count against the call's feature (requests) but not against
tokens, spend or key budgets, which measure the operator's money; their tokens and vendor
cost are still recorded in the ledger entry's details.

An API key's budget is a counter of the active counter store (``<workspace>/apikey:<id>``,
feature ``ai_key_spend``, month), moved like a hold (estimate, then the difference); it is not
in the usage ledger, so ``vendo usage rebuild`` after a Redis data loss does not restore it
(the spend itself is in the ledger entries' ``cost``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, object_session
from starlette.concurrency import run_in_threadpool

from vendo.ai.models import AICredential, AIKeyBudget
from vendo.ai.vault import Vault
from vendo.ai.writer import MeterWriter, Unclean
from vendo.capabilities import COMPENSATIONS, Bucket, ChatChunk, ChatRequest, ChatResponse, Embeddings, ModelInfo, Principal, Usage, \
    counter_key
from vendo.entitlements.catalog import Catalog, Plan
from vendo.entitlements.periods import period_start
from vendo.entitlements.plancache import MISS, PlanCache
from vendo.entitlements.service import TIER_LIMITED, Decision
from vendo.errors import Conflict, Forbidden, InvalidInput, NotFound, VendoError
from vendo.identity.models import Membership
from vendo.identity.roles import Role, allows

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.ai")

CHAT_FEATURE = "ai_chat"
EMBEDDINGS_FEATURE = "ai_embeddings"
KEY_BUDGET_FEATURE = "ai_key_spend"
MICRO = 1_000_000
_CREDENTIALS = AICredential.__table__.c
_BUDGETS = AIKeyBudget.__table__.c
_MEMBERS = Membership.__table__.c
#: What an admission reads about its workspace, in one statement: the workspace's own key for
#: the vendor (BYOK), the API key's monthly budget, and the acting member's role (Core, scalar
#: subqueries: one round trip instead of three).
_WORKSPACE_READ = select(
    select(_CREDENTIALS.ciphertext).where(_CREDENTIALS.workspace == bindparam("workspace"),
                                          _CREDENTIALS.provider == bindparam("provider"))
    .scalar_subquery().label("ciphertext"),
    select(_BUDGETS.monthly_usd).where(_BUDGETS.workspace == bindparam("workspace"),
                                       _BUDGETS.api_key_id == bindparam("api_key_id"))
    .scalar_subquery().label("monthly_usd"),
    select(_MEMBERS.role).where(_MEMBERS.workspace_id == bindparam("workspace"),
                                _MEMBERS.user_id == bindparam("member"))
    .scalar_subquery().label("role"))
#: How long a call's holds live before maintenance releases them (longer than any vendor timeout).
HOLD_TTL = 900.0


#: Every AI service's workspace cache, dropped when a membership, vault key or key budget changes.
_CACHES: weakref.WeakSet[PlanCache] = weakref.WeakSet()
#: ``session.info`` flag: this transaction changed what the workspace caches keep.
_CHANGED = "vendo.ai.workspace_changed"


def workspace_changed(session: Any) -> None:
    """Drop the AI services' workspace caches now and again once ``session`` commits: a
    membership (role), a vault key or an API key's budget changed in it."""
    session.info[_CHANGED] = True
    for cache in list(_CACHES):
        cache.invalidate()


@event.listens_for(Session, "after_commit")
def _changes_committed(session: Any) -> None:
    if session.info.pop(_CHANGED, False):
        for cache in list(_CACHES):
            cache.invalidate()


@event.listens_for(Session, "after_soft_rollback")
def _changes_rolled_back(session: Any, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_CHANGED, None)


def _membership_changed(_mapper: Any, _connection: Any, target: Any) -> None:
    session = object_session(target)
    if session is not None:
        workspace_changed(session)
    else:
        for cache in list(_CACHES):
            cache.invalidate()


for _change in ("after_insert", "after_update", "after_delete"):
    event.listen(Membership, _change, _membership_changed)


def _unclean(work: Any) -> Any:
    """``work`` for a writer without a savepoint: any Vendo error it raises may follow writes,
    so it is raised as :class:`Unclean` (the write then runs again alone and rolls back)."""

    def run(session: Any) -> Any:
        try:
            return work(session)
        except VendoError as exc:
            raise Unclean(exc) from exc

    return run


class AIRefused(VendoError):
    """An AI call refused by entitlements: 402 (plan: ``TIER_LIMITED``...) or 429 (quota,
    budget), with the decision in ``details`` and ``Retry-After`` on a 429."""

    def __init__(self, decision: Decision, now: datetime) -> None:
        from vendo.entitlements.endpoints import Refused

        refused = Refused(decision, now)
        super().__init__(refused.message, code=refused.code, status_code=refused.status_code, details=refused.details)
        self.headers = refused.headers
        self.decision = decision


@dataclass(frozen=True)
class Caller:
    """Who pays for a call: the subject (a workspace, or a user), the member acting, the
    workspace whose vault is used, and the API key used (for its budget)."""

    subject: str
    member: str | None = None
    workspace: str | None = None
    api_key_id: str | None = None
    #: Check, in the admission's own transaction, that ``member`` still belongs to ``workspace``
    #: with a role that may use metered features (the ``/v1`` routes set it for API keys, so
    #: the membership read shares the admission's round trip).
    verify_member: bool = False

    @classmethod
    def of(cls, who: Principal | str | Caller) -> Caller:
        """From a :class:`Principal` (its workspace pays, else its user), a subject id, or a Caller."""
        if isinstance(who, Caller):
            return who
        if isinstance(who, str):
            if not who:
                raise InvalidInput("subject is required", code="invalid_subject")
            return cls(subject=who, workspace=who if who.startswith("ws_") else None)
        key = who.credential if who.method == "api_key" else None
        if who.workspace:
            return cls(subject=who.workspace, member=who.subject, workspace=who.workspace, api_key_id=key)
        return cls(subject=who.subject, api_key_id=key)


@dataclass
class _Gate:
    """One admitted call: what was reserved and how to reach the vendor."""

    caller: Caller
    feature: str
    model: str
    info: ModelInfo
    provider: Any
    api_key: str | None
    byok: bool
    prompt_estimate: int
    completion_reserved: int
    send_max_tokens: int | None
    #: feature -> (hold id, limit, amount reserved, role: "call", "tokens" or "spend")
    holds: dict[str, tuple[str, int | None, int, str]] = field(default_factory=dict)
    warning_ratio: float = 0.8
    key_budget: tuple[str, int, int] | None = None  # (counter key, limit, reserved micro-dollars)
    started: float = field(default_factory=time.perf_counter)
    settled: bool = False
    #: Names the call's ledger entries of meters without limits (no hold: ``<call_id>:<feature>``).
    call_id: str = field(default_factory=lambda: f"ai_{uuid.uuid4().hex}")


class AI:
    """Gated, metered AI calls (see the module docstring)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self.vault = Vault(kernel)
        self._writer = MeterWriter(kernel)
        self._routes: dict[str, tuple[Any, ModelInfo]] | None = None
        #: What admissions read about a workspace (vault ciphertext, API-key budget, member's
        #: role), kept like the plan cache: dropped in this process when a vault key, a key
        #: budget or a membership changes (once that transaction commits, and at its flush),
        #: seen by other processes within ``[entitlements] plan_cache_ttl`` (0: not cached).
        self.workspace_cache = PlanCache(kernel.settings.entitlements.plan_cache_ttl)
        _CACHES.add(self.workspace_cache)

    # -- models ------------------------------------------------------------------------------

    async def _table(self) -> dict[str, tuple[Any, ModelInfo]]:
        if self._routes is None:
            table: dict[str, tuple[Any, ModelInfo]] = {}
            for provider in self._kernel.providers.active("ai"):
                for info in await provider.models():
                    table.setdefault(info.id, (provider, info))
            self._routes = table
        return self._routes

    def _route(self, table: dict[str, tuple[Any, ModelInfo]], catalog: Catalog,
               requested: str) -> tuple[str, Any, ModelInfo]:
        if not isinstance(requested, str) or not requested:
            raise InvalidInput("model is required", code="invalid_model")
        model = catalog.ai.aliases.get(requested, requested)
        found = table.get(model)
        if found is None:
            raise NotFound(f"the model '{requested}' does not exist", code="model_not_found",
                           details={"model": requested})
        return model, found[0], found[1]

    async def models(self, who: Principal | str | Caller) -> list[ModelInfo]:
        """The models the caller's plan may use (aliases listed as models of their target)."""
        caller = Caller.of(who)
        catalog, plan = await run_in_threadpool(self._kernel.entitlements.effective_plan, caller.subject)
        table = await self._table()
        listed = [info for model, (_p, info) in table.items() if plan.ai.allows(model, catalog.ai.aliases)]
        for alias, target in catalog.ai.aliases.items():
            if target in table and alias not in table and plan.ai.allows(target, catalog.ai.aliases):
                info = table[target][1]
                listed.append(ModelInfo(id=alias, provider=info.provider, kind=info.kind,
                                        input_cost_per_token=info.input_cost_per_token,
                                        output_cost_per_token=info.output_cost_per_token))
        return sorted(listed, key=lambda i: i.id)

    # -- admission -------------------------------------------------------------------------------

    def _refusal(self, catalog: Catalog, plan: Plan, feature: str, message: str, test: Any) -> AIRefused:
        plans = catalog.ordered_plans()
        ids = [p.id for p in plans]
        above = plans[ids.index(plan.id) + 1:] if plan.id in ids else plans
        upgrade = next((p.id for p in above if test(p)), None)
        if upgrade:
            message += f"; upgrade to {catalog.plans[upgrade].name}"
        decision = Decision(allowed=False, feature=feature, reason=TIER_LIMITED, upgrade_tier=upgrade,
                            message=message, plan=plan.id)
        return AIRefused(decision, self._kernel.now())

    async def _admit(self, caller: Caller, feature: str, requested: str, *, kind: str,
                     messages: list[Mapping[str, Any]] | None = None, inputs: list[str] | None = None,
                     max_tokens: int | None = None) -> _Gate:
        """Steps 1 to 3 of the module docstring. The prompt is counted on the event loop (the
        model resolved through the plan cache's catalog); then one write of the
        :class:`MeterWriter` (a group-committed transaction) reads the plan, routes the model,
        checks the allow-list, looks up the vault and takes every hold."""
        table = await self._table()
        entitlements = self._kernel.entitlements
        found = entitlements.plan_state(caller.subject) if caller.subject else None  # the plan cache, when fresh
        catalog = found[0] if found is not None else \
            (await run_in_threadpool(entitlements.effective_plan, caller.subject))[0]
        model, provider, info = self._route(table, catalog, requested)
        if info.kind != kind:
            raise InvalidInput(f"'{requested}' is a{'n' if info.kind == 'embedding' else ''} {info.kind} model",
                               code="wrong_model_kind", details={"model": requested})
        if kind == "chat":
            prompt = provider.count_tokens(model, list(messages or []))
        else:
            prompt = sum(provider.count_tokens(model, [{"role": "user", "content": text}]) for text in inputs or [])

        if found is not None:  # nothing to hold or read (cached plan and workspace): no write at all
            gate = self._admit_in(None, table, caller, feature, requested, kind, prompt, max_tokens, planned=found)
            if gate is not None:
                return gate

        def work(session: Any) -> _Gate:
            return self._admit_in(session, table, caller, feature, requested, kind, prompt, max_tokens)

        return await self._writer.run(work, orphan=self._abandoned, savepoint=False)

    def _abandoned(self, gate: _Gate) -> None:
        """The caller of an admission went away before using it: give its holds back."""
        asyncio.get_running_loop().create_task(self._release(gate))

    def _admit_in(self, session: Any, table: dict[str, tuple[Any, ModelInfo]], caller: Caller, feature: str,
                  requested: str, kind: str, prompt: int, max_tokens: int | None, *,
                  planned: Any = None) -> _Gate | None:
        """Admission in ``session``'s transaction: plan, model, allow-list, then one read of
        the workspace (vault key, API-key budget, member's role: :meth:`_workspace_row`), then
        every hold. With ``session=None`` (on the event loop, ``planned`` from the plan cache):
        from the caches alone, writing nothing; ``None`` when that is not enough (the workspace
        row is not cached, a meter has a limit to hold, or the API key has a budget)."""
        entitlements = self._kernel.entitlements
        now = self._kernel.now()
        if not caller.subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        if session is not None:
            planned = entitlements.plan_state(caller.subject, session)
        catalog, plan = planned[0], planned[1]
        model, provider, info = self._route(table, catalog, requested)
        aliases = catalog.ai.aliases
        if not plan.ai.allows(model, aliases):
            raise self._refusal(catalog, plan, feature, f"the model '{requested}' is not included in the "
                                f"{plan.name} plan", lambda p: p.ai.allows(model, aliases))
        ciphertext = monthly_usd = None
        if caller.workspace:
            found = self._workspace_row(session, caller, info.provider)
            if found is None:
                return None
            ciphertext, monthly_usd, role = found
            if caller.verify_member:
                self._check_member(caller, role)
        elif caller.verify_member:
            raise NotFound("subject not found", code="subject_not_found")
        api_key = self.vault.open(caller.workspace, ciphertext) if ciphertext is not None else None
        byok = api_key is not None
        if not byok and not plan.ai.managed:
            raise self._refusal(
                catalog, plan, feature,
                f"the {plan.name} plan needs the workspace's own {info.provider} key (POST /api/v1/ai/credentials)",
                lambda p: p.ai.managed and p.ai.allows(model, aliases))
        metered = not byok and (catalog.ai.token_feature in catalog.features or catalog.ai.spend_feature in
                                catalog.features or caller.api_key_id is not None)
        completion = 0
        send = max_tokens
        if kind == "chat":
            completion = max_tokens or catalog.ai.default_max_tokens
            if metered:
                send = completion
        gate = _Gate(caller, feature, model, info, provider, api_key, byok, prompt, completion, send)
        gate.warning_ratio = catalog.ai.warning_ratio
        wanted = [(feature, 1, "call")]
        if not byok:
            tokens = gate.prompt_estimate + gate.completion_reserved
            spend = self._micro(gate, Usage(gate.prompt_estimate, gate.completion_reserved))
            if catalog.ai.token_feature in catalog.features and catalog.ai.token_feature != feature:
                wanted.append((catalog.ai.token_feature, max(tokens, 1), "tokens"))
            if catalog.ai.spend_feature in catalog.features and spend > 0:
                wanted.append((catalog.ai.spend_feature, spend, "spend"))
        if session is None:  # on the event loop: only when there is nothing to hold
            if not byok and caller.api_key_id and caller.workspace and monthly_usd is not None:
                return None
            decisions = entitlements.admit_unlimited(caller.subject, [(held, amount) for held, amount, _r in wanted],
                                                     member=caller.member, planned=planned)
            if decisions is None:
                return None
            for held, amount, role in wanted:
                gate.holds[held] = ("", None, amount, role)
            return gate
        # Nothing is written above this line (a refusal there leaves nothing behind: the writer
        # needs no savepoint, see MeterWriter). The key budget first: its refusal moves nothing.
        if not byok and caller.api_key_id and caller.workspace and monthly_usd is not None:
            self._reserve_key_budget(session, gate, monthly_usd)
        try:
            decisions = entitlements.hold_many(session, caller.subject, [(held, amount) for held, amount, _r in wanted],
                                               member=caller.member, ttl=HOLD_TTL, planned=planned,
                                               skip_unlimited=True)
        except VendoError as exc:  # the store failed after moving some counters: roll the write back
            raise Unclean(exc) from exc
        if len(decisions) != len(wanted) or not decisions[-1].allowed:  # all or none: hold_many moved its back
            if gate.key_budget is not None:
                key, limit, amount = gate.key_budget
                self._kernel.providers.get("counters").add(session, [Bucket(key, limit)], -amount)
            raise AIRefused(decisions[-1], now)
        for (held, amount, role), decision in zip(wanted, decisions):
            gate.holds[held] = (decision.hold_id or "", decision.limit, amount, role)
        return gate

    def _workspace_row(self, session: Any, caller: Caller, provider: str) -> tuple[Any, Any, Any] | None:
        """``(vault ciphertext, API-key monthly budget, member's role)`` of the caller's
        workspace: from :attr:`workspace_cache` when fresh, else (with a ``session``) one
        statement, then cached. ``None`` without a session when nothing fresh is cached."""
        key = (caller.workspace, provider, caller.api_key_id or "", caller.member or "")
        cache = self.workspace_cache
        found = cache.get(key)
        if found is not MISS:
            return found
        if session is None:
            return None
        generation = cache.generation
        row = session.connection().execute(_WORKSPACE_READ, {
            "workspace": caller.workspace, "provider": provider, "api_key_id": caller.api_key_id or "",
            "member": caller.member or ""}).first()
        found = (row.ciphertext, row.monthly_usd, row.role)
        if not session.info.get(_CHANGED):  # never cache what this transaction may have changed itself
            cache.put(key, found, generation)
        return found

    @staticmethod
    def _check_member(caller: Caller, role: str | None) -> None:
        """The acting member still belongs to the workspace and may use metered features."""
        if role is None:
            raise NotFound("subject not found", code="subject_not_found")
        if not allows(Role(role), "features.use"):
            raise Forbidden(f"your role ({Role(role).value}) cannot use metered features", code="insufficient_role")

    def _micro(self, gate: _Gate, usage: Usage) -> int:
        # rounded up to the micro-dollar, after dropping float noise (3e-6 * 11 + 15e-6 * 5 is
        # 108.00000000000001 micro-dollars, which is 108, not 109)
        return int(math.ceil(round(gate.provider.cost(gate.model, usage) * MICRO, 6)))

    def _reserve_key_budget(self, session: Any, gate: _Gate, monthly_usd: float) -> None:
        caller = gate.caller
        start = period_start("month", self._kernel.now())
        key = counter_key(f"{caller.workspace}/apikey:{caller.api_key_id}", KEY_BUDGET_FEATURE, "month", start)
        limit = int(round(monthly_usd * MICRO))
        amount = max(self._micro(gate, Usage(gate.prompt_estimate, gate.completion_reserved)), 0)
        store = self._kernel.providers.get("counters")
        values = store.try_add(session, [Bucket(key, limit)], amount)
        if values is None:
            used = store.read(session, [key])[0]
            decision = Decision(allowed=False, feature=KEY_BUDGET_FEATURE, limit=limit, used=used,
                                remaining=max(limit - used, 0), reason="API_KEY_BUDGET_EXHAUSTED",
                                message=f"this API key's monthly AI budget (${limit / MICRO:.2f}) is used up")
            raise AIRefused(decision, self._kernel.now())
        gate.key_budget = (key, limit, amount)

    async def _release(self, gate: _Gate) -> None:
        """Give every hold back: the call did not happen (or the vendor failed)."""
        if gate.settled:
            return
        gate.settled = True
        if gate.key_budget is None and not any(hold_id for hold_id, *_rest in gate.holds.values()):
            return  # nothing was held (meters without limits): nothing to give back
        try:
            await self._writer.run(_unclean(lambda session: self._release_in(session, gate)), savepoint=False)
        except Exception:
            log.warning("could not release the holds of a failed AI call: they expire on their own", exc_info=True)

    def _release_in(self, session: Any, gate: _Gate) -> None:
        entitlements = self._kernel.entitlements
        for feature, (hold_id, _limit, _amount, _role) in gate.holds.items():
            if not hold_id:  # an unlimited meter: nothing was held
                continue
            try:  # one at a time: a hold settled meanwhile (expired, released by maintenance) stays so
                entitlements.release_holds(session, [hold_id], usage=False)
            except (Conflict, NotFound):
                log.warning("the %s hold %s was already settled", feature, hold_id)
        if gate.key_budget is not None:
            key, limit, amount = gate.key_budget
            self._kernel.providers.get("counters").add(session, [Bucket(key, limit)], -amount)

    async def _settle(self, gate: _Gate, usage: Usage, *, kind: str,
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Commit every hold at the actual usage and record the call; warn at 80% (one write
        of the :class:`MeterWriter`)."""
        if gate.settled:
            return {}
        gate.settled = True
        latency_ms = round((time.perf_counter() - gate.started) * 1000.0, 3)
        return await self._writer.run(
            _unclean(lambda session: self._settle_in(session, gate, usage, kind, extra, latency_ms)), savepoint=False)

    def _settle_now(self, gate: _Gate, usage: Usage, *, kind: str, extra: Mapping[str, Any] | None = None) -> None:
        """:meth:`_settle` without awaiting (a cancelled task may not await any more): in a
        transaction of its own, on the calling thread."""
        if gate.settled:
            return
        gate.settled = True
        latency_ms = round((time.perf_counter() - gate.started) * 1000.0, 3)
        undo: list[Any] = []
        try:
            with self._kernel.session() as session:
                session.info[COMPENSATIONS] = undo
                self._settle_in(session, gate, usage, kind, extra, latency_ms)
        except BaseException:
            while undo:
                undo.pop()()
            raise

    def _settle_in(self, session: Any, gate: _Gate, usage: Usage, kind: str, extra: Mapping[str, Any] | None,
                   latency_ms: float) -> dict[str, Any]:
        """Every hold committed at the actual usage with :meth:`Entitlements.commit_holds` (the
        call's feature records tokens, cost and details in its ledger entry), the key budget
        moved by the difference, and the 80% warnings."""
        cost = gate.provider.cost(gate.model, usage)
        details = {"model": gate.model, "vendor": gate.info.provider, "kind": kind, "byok": gate.byok,
                   "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                   "latency_ms": latency_ms, "vendor_cost": cost, "api_key": gate.caller.api_key_id, **(extra or {})}
        catalog_cost = 0.0 if gate.byok else cost
        spend = self._micro(gate, usage)
        actual_of = {"call": 1, "tokens": usage.total_tokens, "spend": spend}
        settlements, records, watched, warnings = [], [], set(), []
        for feature, (hold_id, limit, _amount, role) in gate.holds.items():
            if role == "call":
                settlement = (1, usage.total_tokens, catalog_cost, details)
            else:
                settlement = (actual_of[role], 0, 0.0, {"model": gate.model, "kind": kind})
            if hold_id:
                settlements.append((hold_id, *settlement))
                if role != "call" and limit:
                    watched.add(hold_id)
            else:  # an unlimited meter, admitted without a hold: recorded now
                records.append((feature, *settlement, f"{gate.call_id}:{feature}"))
        entitlements = self._kernel.entitlements
        results = entitlements.commit_holds(session, settlements, usage=watched) if settlements else []
        if records:
            entitlements.record_many(session, gate.caller.subject, records, member=gate.caller.member)
        committed = iter(results)
        for feature, (hold_id, limit, _amount, role) in gate.holds.items():
            result = next(committed) if hold_id else None
            if result is not None and role != "call" and limit:
                warnings.append((feature, result["used"], actual_of[role], limit))
        if gate.key_budget is not None:
            key, limit, reserved = gate.key_budget
            used = self._kernel.providers.get("counters").add(session, [Bucket(key, limit)], spend - reserved)[0]
            warnings.append((KEY_BUDGET_FEATURE, used, spend, limit))
        for feature, used, actual, limit in warnings:
            self._warn(session, gate, feature, used, actual, limit)
        return details

    def _warn(self, session: Any, gate: _Gate, feature: str, used: int, actual: int, limit: int) -> None:
        threshold = gate.warning_ratio * limit
        if not (used - actual < threshold <= used):
            return
        payload = {"subject": gate.caller.subject, "feature": feature, "used": used, "limit": limit,
                   "ratio": round(used / limit, 4), "api_key": gate.caller.api_key_id if feature == KEY_BUDGET_FEATURE
                   else None, "model": gate.model}
        self._kernel.outbox.publish(session, "ai.budget.warning", payload)

    # -- calls -------------------------------------------------------------------------------

    def _request(self, gate: _Gate, request: ChatRequest) -> ChatRequest:
        return ChatRequest(model=gate.model, messages=tuple(request.messages), temperature=request.temperature,
                           max_tokens=gate.send_max_tokens, api_key=gate.api_key, timeout=request.timeout,
                           extra=request.extra)

    async def chat(self, who: Principal | str | Caller, request: ChatRequest, *,
                   feature: str = CHAT_FEATURE) -> ChatResponse:
        """A complete chat answer for ``who`` (a principal, a subject id or a :class:`Caller`).

        :raises NotFound: ``model_not_found``, ``unknown_feature``.
        :raises AIRefused: 402 ``TIER_LIMITED``, 429 quota or budget reason codes.
        :raises Unauthorized: ``provider_key_rejected`` (nothing consumed).
        :raises UpstreamError: the vendor failed or timed out (502, nothing consumed).
        """
        caller = Caller.of(who)
        gate = await self._admit(caller, feature, request.model, kind="chat", messages=list(request.messages),
                                 max_tokens=request.max_tokens)
        try:
            response = await gate.provider.chat(self._request(gate, request))
        except BaseException:
            await self._release(gate)
            raise
        await self._settle(gate, response.usage, kind="chat")
        return ChatResponse(id=response.id, model=request.model, content=response.content,
                            finish_reason=response.finish_reason, usage=response.usage)

    async def stream(self, who: Principal | str | Caller, request: ChatRequest, *,
                     feature: str = CHAT_FEATURE) -> AsyncIterator[ChatChunk]:
        """The answer as chunks; the last carries ``finish_reason`` and ``usage``. Admission
        errors are raised before the first chunk (see :meth:`chat`).

        :raises AIRefused: ``reservation_exceeded`` after the chunks that fit, when the vendor
            sends more than was reserved (the holds are committed at the reservation).
        """
        caller = Caller.of(who)
        gate = await self._admit(caller, feature, request.model, kind="chat", messages=list(request.messages),
                                 max_tokens=request.max_tokens)
        return self._stream(gate, request)

    async def _stream(self, gate: _Gate, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        pieces = 0
        text: list[str] = []
        limited = not gate.byok and gate.send_max_tokens is not None
        source = gate.provider.stream(self._request(gate, request))
        try:
            async for chunk in source:
                if chunk.delta:
                    pieces += 1
                    if limited and pieces > gate.completion_reserved:
                        await self._settle(gate, Usage(gate.prompt_estimate, gate.completion_reserved),
                                           kind="stream", extra={"cut": True})
                        decision = Decision(allowed=False, feature=gate.feature, reason="reservation_exceeded",
                                            message=f"the answer went past the {gate.completion_reserved} completion "
                                                    "tokens reserved for it and was cut")
                        raise AIRefused(decision, self._kernel.now())
                    text.append(chunk.delta)
                if chunk.usage is not None:
                    usage = chunk.usage
                    if limited:  # never count past the reservation
                        usage = Usage(usage.prompt_tokens, min(usage.completion_tokens, gate.completion_reserved))
                    await self._settle(gate, usage, kind="stream")
                yield ChatChunk(id=chunk.id, model=request.model, delta=chunk.delta,
                                finish_reason=chunk.finish_reason, usage=chunk.usage)
        except AIRefused:
            raise
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer went away mid-answer: what the vendor produced so far is counted.
            # (Synchronously: a cancelled task may not await any more.)
            self._settle_now(gate, Usage(gate.prompt_estimate, pieces), kind="stream", extra={"abandoned": True})
            raise
        except BaseException:
            await self._release(gate)
            raise
        finally:
            if not gate.settled:  # the vendor ended without usage: count what it sent
                await self._settle(gate, Usage(gate.prompt_estimate, pieces), kind="stream")
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    async def embed(self, who: Principal | str | Caller, model: str, inputs: list[str], *,
                    feature: str = EMBEDDINGS_FEATURE) -> Embeddings:
        """One vector per input, gated and metered like :meth:`chat` (input tokens only)."""
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise InvalidInput("input must be a non-empty string or list of strings", code="invalid_input")
        caller = Caller.of(who)
        gate = await self._admit(caller, feature, model, kind="embedding", inputs=inputs)
        try:
            if gate.api_key is None:  # providers written before BYOK take no api_key
                result = await gate.provider.embed(gate.model, inputs)
            else:
                result = await gate.provider.embed(gate.model, inputs, api_key=gate.api_key)
        except BaseException:
            await self._release(gate)
            raise
        await self._settle(gate, result.usage, kind="embedding")
        return Embeddings(model=model, vectors=result.vectors, usage=result.usage)

    # -- API-key budgets ------------------------------------------------------------------------

    def set_key_budget(self, session: Any, workspace: str, api_key_id: str, monthly_usd: float | None, *,
                       actor: str) -> dict[str, Any] | None:
        """Set (or with ``None`` remove) an API key's monthly AI budget in US dollars."""
        workspace_changed(session)
        row = session.get(AIKeyBudget, (workspace, api_key_id))
        if monthly_usd is None:
            if row is not None:
                session.delete(row)
            self._kernel.audit.record(session, "ai.budget.removed", actor=actor, workspace=workspace,
                                      target_type="api_key", target_id=api_key_id)
            return None
        if not isinstance(monthly_usd, (int, float)) or isinstance(monthly_usd, bool) or not 0 <= monthly_usd <= 1e9:
            raise InvalidInput("monthly_usd is a number of US dollars, 0 or more", code="invalid_budget")
        row = row or AIKeyBudget(workspace=workspace, api_key_id=api_key_id)
        row.monthly_usd, row.updated_by, row.updated_at = float(monthly_usd), actor, self._kernel.now()
        session.add(row)
        self._kernel.audit.record(session, "ai.budget.set", actor=actor, workspace=workspace, target_type="api_key",
                                  target_id=api_key_id, details={"monthly_usd": float(monthly_usd)})
        return {"api_key_id": api_key_id, "monthly_usd": float(monthly_usd)}
