"""HTTP of the entitlement service under ``/api/v1``, and dependencies for integrators:
``require_feature`` (rate limit, then consume) and ``rate_limited`` (rate limit only).

A caller acts on a subject it may see: itself (a signed-in user), or a workspace it belongs
to (an API key: its own workspace only). Consuming on a workspace's pooled quota needs the
``features.use`` permission (VIEWERs cannot). Idempotency keys are scoped to the subject, so
tenants can never collide.

Gated requests (``/check``, ``/consume``, ``/track`` and ``require_feature``) first count
against the caller's rate limit (``kernel.rate_limits``, once the subject is known to be
visible to the caller, so nobody can spend another tenant's limit or read its plan): over
it, 429 ``RATE_LIMITED`` with ``Retry-After``. Every gated response, allowed or refused,
carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch
seconds) of the most constraining window, unless nothing limits the caller.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator, Optional

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vendo.capabilities import Principal
from vendo.entitlements.ratelimit import RateLimited, RateLimitResult
from vendo.entitlements.service import SUBSCRIPTION_INACTIVE, TIER_LIMITED, Decision
from vendo.errors import Forbidden, NotFound, VendoError
from vendo.identity.auth import current_principal
from vendo.identity.roles import allows

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel


class Refused(VendoError):
    """A refused consume: 402 for plan limits, 429 for exhausted quotas (rate limits raise
    :class:`~vendo.entitlements.ratelimit.RateLimited`)."""

    def __init__(self, decision: Decision, now: datetime) -> None:
        status = 402 if decision.reason in (TIER_LIMITED, SUBSCRIPTION_INACTIVE) else 429
        super().__init__(decision.message, code=decision.reason or "refused", status_code=status,
                         details=decision.to_dict())
        self.headers = {}
        if status == 429 and decision.resets_at is not None:
            self.headers["Retry-After"] = str(max(1, int((decision.resets_at - now).total_seconds()) + 1))


def resolve_subject(kernel: Kernel, principal: Principal, requested: str | None, *,
                    consuming: bool) -> tuple[str, str | None]:
    """``(subject, member)`` for a request, enforcing tenant isolation.

    :raises NotFound: ``subject_not_found``: not the caller, nor one of its workspaces.
    :raises Forbidden: ``insufficient_role``: a VIEWER consuming a workspace quota.
    """
    subject = requested or principal.workspace or principal.subject
    if subject == principal.subject and principal.workspace is None:
        return subject, None
    if principal.workspace is not None and subject != principal.workspace:
        raise NotFound("subject not found", code="subject_not_found")
    with kernel.session(read_only=True) as session:
        role = kernel.identity.role_of(session, principal.subject, subject)
    if role is None:
        raise NotFound("subject not found", code="subject_not_found")
    if consuming and not allows(role, "features.use"):
        raise Forbidden(f"your role ({role.value}) cannot use metered features", code="insufficient_role")
    return subject, principal.subject


def _scoped(subject: str, key: str | None) -> str | None:
    return f"{subject}|{key}" if key else None


#: The ``request.state`` attribute holding the request's :class:`RateLimitResult`.
RATE_LIMIT_STATE = "rate_limit"


def _limit(kernel: Kernel, principal: Principal, subject: str, request: Request,
           response: Response) -> RateLimitResult:
    """Count the request against the caller's rate limit (once per request: a result already
    on ``request.state`` is reused), put the ``X-RateLimit-*`` headers on ``response``.

    :raises RateLimited: 429 ``RATE_LIMITED``, with the headers and ``Retry-After``.
    """
    result = getattr(request.state, RATE_LIMIT_STATE, None)
    if result is None:
        result = kernel.rate_limits.hit(principal, subject=subject)
        setattr(request.state, RATE_LIMIT_STATE, result)
    if not result.allowed:
        raise RateLimited(result)
    response.headers.update(result.headers())
    return result


@contextmanager
def _with_headers(result: RateLimitResult) -> Iterator[None]:
    """Errors raised inside carry the rate-limit headers too (the error handler builds a new
    response, so the ones set on the injected ``Response`` would be lost)."""
    try:
        yield
    except VendoError as exc:
        exc.headers = {**(getattr(exc, "headers", None) or {}), **result.headers()}
        raise


def rate_limit_headers(request: Request) -> dict[str, str]:
    """The ``X-RateLimit-*`` headers of this request's rate-limit result (empty if it was not
    rate limited), for routes that build their own ``Response`` (FastAPI adds the headers of
    dependencies only to responses it builds itself)::

        @router.get("/export", dependencies=[Depends(rate_limited())])
        def export(request: Request):
            return StreamingResponse(rows(), headers=rate_limit_headers(request))
    """
    result = getattr(request.state, RATE_LIMIT_STATE, None)
    return result.headers() if result is not None else {}


class CheckBody(BaseModel):
    feature: str = Field(..., min_length=1, max_length=64)
    amount: int = Field(1, gt=0)
    subject: Optional[str] = Field(None, max_length=64)


class ConsumeBody(CheckBody):
    idempotency_key: Optional[str] = Field(None, min_length=1, max_length=200)
    tokens: int = Field(0, ge=0)
    cost: float = Field(0.0, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TrackBody(ConsumeBody):
    amount: int = Field(1, description="Non-zero; negative to lower a limit gauge.")


class RefundBody(BaseModel):
    idempotency_key: str = Field(..., min_length=1, max_length=200)
    subject: Optional[str] = Field(None, max_length=64)


def build_router(kernel: Kernel) -> APIRouter:
    """The entitlement routes bound to ``kernel``."""
    router = APIRouter(tags=["entitlements"])
    service = kernel.entitlements

    limited = {429: {"description": "rate limited (RATE_LIMITED)"}}

    @router.post("/check", summary="Would this be allowed? (records nothing)", responses=limited)
    def check(body: CheckBody, request: Request, response: Response,
              principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, member = resolve_subject(kernel, principal, body.subject, consuming=False)
        with _with_headers(_limit(kernel, principal, subject, request, response)):
            return service.check(subject, body.feature, body.amount, member=member).to_dict()

    @router.post("/consume", summary="Check and record atomically (402/429 when refused)",
                 responses={402: {"description": "not in the plan"},
                            429: {"description": "quota exhausted, or rate limited (RATE_LIMITED)"}})
    def consume(body: ConsumeBody, request: Request, response: Response,
                principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, member = resolve_subject(kernel, principal, body.subject, consuming=True)
        with _with_headers(_limit(kernel, principal, subject, request, response)):
            decision = service.consume(subject, body.feature, body.amount, member=member,
                                       idempotency_key=_scoped(subject, body.idempotency_key), tokens=body.tokens,
                                       cost=body.cost, metadata=body.metadata)
            if not decision.allowed:
                raise Refused(decision, kernel.now())
            return decision.to_dict()

    @router.post("/track", summary="Record usage without gating", responses=limited)
    def track(body: TrackBody, request: Request, response: Response,
              principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, member = resolve_subject(kernel, principal, body.subject, consuming=True)
        with _with_headers(_limit(kernel, principal, subject, request, response)):
            return service.track(subject, body.feature, body.amount, member=member,
                                 idempotency_key=_scoped(subject, body.idempotency_key), tokens=body.tokens,
                                 cost=body.cost, metadata=body.metadata).to_dict()

    @router.post("/refund", summary="Give back the units of a consume (once)")
    def refund(body: RefundBody, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, _member = resolve_subject(kernel, principal, body.subject, consuming=True)
        return service.refund(_scoped(subject, body.idempotency_key))

    @router.get("/entitlements", summary="The subject's plan and what it grants")
    def entitlements(subject: Optional[str] = None,
                     principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        resolved, _member = resolve_subject(kernel, principal, subject, consuming=False)
        return service.entitlements(resolved)

    @router.get("/usage/current", summary="Every meter: used, limit, reset, 80% warning")
    def usage(subject: Optional[str] = None, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        resolved, member = resolve_subject(kernel, principal, subject, consuming=False)
        return service.usage(resolved, member=member)

    @router.get("/usage/history", summary="Ledger totals by feature and period")
    def history(subject: Optional[str] = None, feature: Optional[str] = None, since: Optional[datetime] = None,
                until: Optional[datetime] = None,
                principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        resolved, _member = resolve_subject(kernel, principal, subject, consuming=False)
        return {"subject": resolved, "data": service.usage_history(resolved, feature=feature, since=since,
                                                                    until=until)}

    @router.get("/flags", summary="Every feature flag for the subject (rollout per plan)")
    def flags(subject: Optional[str] = None, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        resolved, _member = resolve_subject(kernel, principal, subject, consuming=False)
        return kernel.flags.for_subject(resolved)

    @router.get("/flags/{name}", summary="One feature flag for the subject (404 unknown_flag)")
    def flag(name: str, subject: Optional[str] = None,
             principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        resolved, _member = resolve_subject(kernel, principal, subject, consuming=False)
        return {"subject": resolved, **kernel.flags.evaluate(resolved, name).to_dict()}

    return router


def require_feature(feature: str, amount: int = 1, *, workspace_param: str = "workspace_id") -> Any:
    """A dependency for integrators' routes: count the request against the caller's rate
    limit (429 ``RATE_LIMITED``), then consume ``amount`` units of ``feature`` before the route
    runs (402/429 when refused) and refund them if the route raises. The subject is the
    workspace of the path parameter ``workspace_param``, else the credential's workspace, else
    the signed-in user. An ``Idempotency-Key`` request header makes retries count once. The
    response carries the ``X-RateLimit-*`` headers (see :func:`rate_limit_headers` for routes
    returning their own ``Response``)."""

    async def dependency(request: Request, response: Response,
                         principal: Principal = Depends(current_principal)) -> Any:
        kernel = request.app.state.kernel
        requested = request.path_params.get(workspace_param)
        subject, member = await run_in_threadpool(resolve_subject, kernel, principal, requested, consuming=True)
        limit = await run_in_threadpool(_limit, kernel, principal, subject, request, response)
        key = _scoped(subject, request.headers.get("idempotency-key") or f"auto-{uuid.uuid4().hex}")
        with _with_headers(limit):
            decision = await run_in_threadpool(lambda: kernel.entitlements.consume(
                subject, feature, amount, member=member, idempotency_key=key))
            if not decision.allowed:
                raise Refused(decision, kernel.now())
        request.state.entitlement = decision
        try:
            yield decision
        except Exception:
            if not decision.replayed:
                await run_in_threadpool(kernel.entitlements.refund, key)
            raise

    return dependency


def rate_limited(*, workspace_param: str = "workspace_id") -> Any:
    """A dependency counting the request against the caller's rate limit, for integrators'
    routes that are not metered: 429 ``RATE_LIMITED`` with ``Retry-After`` when over it, and
    the ``X-RateLimit-*`` headers on the response either way. Gives the
    :class:`~vendo.entitlements.ratelimit.RateLimitResult`. The limits are those of the caller's
    API-key tier, else of the plan of the path parameter ``workspace_param``'s workspace (404
    when the caller is not a member), else the credential's workspace, else the signed-in user.
    Combined with :func:`require_feature` on one route, the request still counts once::

        @router.get("/workspaces/{workspace_id}/notes", dependencies=[Depends(rate_limited())])
        def notes(workspace_id: str): ...
    """

    async def dependency(request: Request, response: Response,
                         principal: Principal = Depends(current_principal)) -> RateLimitResult:
        kernel = request.app.state.kernel
        requested = request.path_params.get(workspace_param)
        subject, _member = await run_in_threadpool(resolve_subject, kernel, principal, requested, consuming=False)
        return await run_in_threadpool(_limit, kernel, principal, subject, request, response)

    return dependency
