"""HTTP of the entitlement service under ``/api/v1``, and ``require_feature`` for integrators.

A caller acts on a subject it may see: itself (a signed-in user), or a workspace it belongs
to (an API key: its own workspace only). Consuming on a workspace's pooled quota needs the
``features.use`` permission (VIEWERs cannot). Idempotency keys are scoped to the subject, so
tenants can never collide.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vendo.capabilities import Principal
from vendo.entitlements.service import SUBSCRIPTION_INACTIVE, TIER_LIMITED, Decision
from vendo.errors import Forbidden, NotFound, VendoError
from vendo.identity.auth import current_principal
from vendo.identity.roles import allows

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel


class Refused(VendoError):
    """A refused consume: 402 for plan limits, 429 for exhausted quotas and rate limits."""

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
    with kernel.session() as session:
        role = kernel.identity.role_of(session, principal.subject, subject)
    if role is None:
        raise NotFound("subject not found", code="subject_not_found")
    if consuming and not allows(role, "features.use"):
        raise Forbidden(f"your role ({role.value}) cannot use metered features", code="insufficient_role")
    return subject, principal.subject


def _scoped(subject: str, key: str | None) -> str | None:
    return f"{subject}|{key}" if key else None


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

    @router.post("/check", summary="Would this be allowed? (records nothing)")
    def check(body: CheckBody, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, member = resolve_subject(kernel, principal, body.subject, consuming=False)
        return service.check(subject, body.feature, body.amount, member=member).to_dict()

    @router.post("/consume", summary="Check and record atomically (402/429 when refused)",
                 responses={402: {"description": "not in the plan"}, 429: {"description": "quota exhausted"}})
    def consume(body: ConsumeBody, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, member = resolve_subject(kernel, principal, body.subject, consuming=True)
        decision = service.consume(subject, body.feature, body.amount, member=member,
                                   idempotency_key=_scoped(subject, body.idempotency_key), tokens=body.tokens,
                                   cost=body.cost, metadata=body.metadata)
        if not decision.allowed:
            raise Refused(decision, kernel.now())
        return decision.to_dict()

    @router.post("/track", summary="Record usage without gating")
    def track(body: TrackBody, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        subject, member = resolve_subject(kernel, principal, body.subject, consuming=True)
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

    return router


def require_feature(feature: str, amount: int = 1, *, workspace_param: str = "workspace_id") -> Any:
    """A dependency for integrators' routes: consume ``amount`` units of ``feature`` before the
    route runs (402/429 when refused) and refund them if the route raises. The subject is the
    workspace of the path parameter ``workspace_param``, else the credential's workspace, else
    the signed-in user. An ``Idempotency-Key`` request header makes retries count once."""

    async def dependency(request: Request, principal: Principal = Depends(current_principal)) -> Any:
        kernel = request.app.state.kernel
        requested = request.path_params.get(workspace_param)
        subject, member = await run_in_threadpool(resolve_subject, kernel, principal, requested, consuming=True)
        key = _scoped(subject, request.headers.get("idempotency-key") or f"auto-{uuid.uuid4().hex}")
        decision = await run_in_threadpool(lambda: kernel.entitlements.consume(subject, feature, amount,
                                                                               member=member, idempotency_key=key))
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
