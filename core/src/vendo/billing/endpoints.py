"""HTTP of billing under ``/api/v1/billing``.

The subject is the caller's workspace (the credential's, or the ``X-Vendo-Workspace``
header). Reading the subscription needs membership; invoices and usage need ADMIN; changing billing
(checkout, portal, change-plan, cancel, resume) needs the workspace OWNER. Webhooks are
anonymous: the provider's signature is the credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vendo.identity.auth import WorkspaceAccess, require_role

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel


class CheckoutBody(BaseModel):
    """A hosted checkout for the caller's workspace."""

    plan: str = Field(..., min_length=1, max_length=64)
    interval: Literal["month", "year"] = "month"
    currency: Optional[str] = Field(None, pattern=r"^[A-Za-z]{3}$")
    seats: int = Field(1, ge=1, le=100_000)
    trial: bool = Field(False, description="Start the plan's trial (no card needed with the local provider).")
    success_url: str = Field(..., min_length=1, max_length=2000)
    cancel_url: str = Field(..., min_length=1, max_length=2000)


class PortalBody(BaseModel):
    """Where the portal sends the customer back."""

    return_url: str = Field(..., min_length=1, max_length=2000)


class ChangePlanBody(BaseModel):
    """A new plan and/or seat count: upgrades now with proration, downgrades at period end."""

    plan: Optional[str] = Field(None, min_length=1, max_length=64)
    seats: Optional[int] = Field(None, ge=1, le=100_000)


class CancelBody(BaseModel):
    """Cancel at the end of the paid period (default) or now."""

    at_period_end: bool = True


def _email(kernel: Kernel, user_id: str) -> str | None:
    from vendo.identity.models import User

    with kernel.session() as session:
        user = session.get(User, user_id)
        return user.email if user is not None else None


def build_router(kernel: Kernel) -> APIRouter:
    """The billing routes of ``kernel``."""
    router = APIRouter(prefix="/billing", tags=["billing"])
    billing = kernel.billing
    owner, admin, member = require_role("OWNER"), require_role("ADMIN"), require_role("VIEWER")

    @router.post("/webhooks/{provider}", summary="Receive a billing provider's webhook")
    async def webhook(provider: str, request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"received": await billing.ingest(provider, request.headers, body)}

    @router.post("/checkout", status_code=201, summary="Open a hosted checkout for the workspace (OWNER)")
    async def checkout(body: CheckoutBody, access: WorkspaceAccess = Depends(owner),
                       idempotency_key: Optional[str] = Header(None, max_length=255)) -> dict[str, Any]:
        email = await run_in_threadpool(_email, kernel, access.principal.subject)
        return await billing.checkout(access.workspace, plan=body.plan, interval=body.interval,
                                      currency=body.currency, seats=body.seats, trial=body.trial,
                                      success_url=body.success_url, cancel_url=body.cancel_url, email=email,
                                      idempotency_key=idempotency_key, actor=access.principal.subject)

    @router.post("/portal", summary="Open the provider's customer portal (OWNER)")
    async def portal(body: PortalBody, access: WorkspaceAccess = Depends(owner)) -> dict[str, Any]:
        return await billing.portal(access.workspace, body.return_url)

    @router.get("/subscription", summary="The workspace's subscription and entitled plan")
    async def subscription(access: WorkspaceAccess = Depends(member)) -> dict[str, Any]:
        return await run_in_threadpool(billing.subscription, access.workspace)

    @router.post("/change-plan", summary="Change plan or seats (OWNER)")
    async def change_plan(body: ChangePlanBody, access: WorkspaceAccess = Depends(owner),
                          idempotency_key: Optional[str] = Header(None, max_length=255)) -> dict[str, Any]:
        return await billing.change_plan(access.workspace, plan=body.plan, seats=body.seats,
                                         actor=access.principal.subject, idempotency_key=idempotency_key)

    @router.post("/cancel", summary="Cancel now or at the period end (OWNER)")
    async def cancel(body: CancelBody, access: WorkspaceAccess = Depends(owner)) -> dict[str, Any]:
        return await billing.cancel(access.workspace, at_period_end=body.at_period_end,
                                    actor=access.principal.subject)

    @router.post("/resume", summary="Undo a cancellation scheduled for the period end (OWNER)")
    async def resume(access: WorkspaceAccess = Depends(owner)) -> dict[str, Any]:
        return await billing.resume(access.workspace, actor=access.principal.subject)

    @router.get("/invoices", summary="The workspace's invoices (ADMIN)")
    async def invoices(access: WorkspaceAccess = Depends(admin)) -> dict[str, Any]:
        return {"data": await billing.invoices(access.workspace)}

    @router.get("/usage", summary="What the workspace's usage-based prices have billed (ADMIN)")
    async def usage(access: WorkspaceAccess = Depends(admin)) -> dict[str, Any]:
        return {"data": await run_in_threadpool(billing.usage.status, access.workspace)}

    return router
