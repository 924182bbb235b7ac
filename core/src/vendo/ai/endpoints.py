"""Routes of the AI domain under ``/api/v1/ai``: the BYOK vault and API-key budgets.

The workspace is the credential's (an API key's), else the ``X-Vendo-Workspace`` header.
Workspace ADMINs (and OWNERs) store, rotate and delete keys and set budgets; members list
them. Keys are write-only: no response ever carries one, only a fingerprint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vendo.ai.models import AIKeyBudget
from vendo.identity.auth import WorkspaceAccess, require_role

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel


class CredentialBody(BaseModel):
    """A vendor key to store (or rotate)."""

    model_config = ConfigDict(extra="forbid")
    provider: str = Field(..., min_length=1, max_length=64, description="openai, anthropic, ollama, mistral...")
    key: str = Field(..., min_length=1, max_length=4096, description="the vendor's API key (never returned)")


class BudgetBody(BaseModel):
    """An API key's monthly AI budget."""

    model_config = ConfigDict(extra="forbid")
    monthly_usd: float = Field(..., ge=0, le=1e9)


def build_router(kernel: Kernel) -> APIRouter:
    """``/api/v1/ai/credentials`` and ``/api/v1/ai/budgets``."""
    router = APIRouter(prefix="/ai", tags=["ai"])
    admin = require_role("ADMIN")
    member = require_role("VIEWER")

    @router.post("/credentials", status_code=201, summary="Store or rotate the workspace's key for a vendor")
    async def put_credential(body: CredentialBody, request: Request, response: Response,
                             access: WorkspaceAccess = Depends(admin)) -> dict[str, Any]:
        def store() -> tuple[dict[str, Any], bool]:
            with kernel.session() as session:
                return kernel.ai.vault.put(session, access.workspace, body.provider, body.key,
                                           actor=access.principal.subject, request=request)

        view, created = await run_in_threadpool(store)
        if not created:
            response.status_code = 200
        return view

    @router.get("/credentials", summary="The workspace's vendor keys (provider and fingerprint only)")
    async def list_credentials(access: WorkspaceAccess = Depends(member)) -> dict[str, Any]:
        def read() -> list[dict[str, Any]]:
            with kernel.session() as session:
                return kernel.ai.vault.list(session, access.workspace)

        return {"data": await run_in_threadpool(read)}

    @router.delete("/credentials/{provider}", status_code=204, summary="Delete the workspace's key for a vendor")
    async def delete_credential(provider: str, request: Request, access: WorkspaceAccess = Depends(admin)) -> Response:
        def remove() -> None:
            with kernel.session() as session:
                kernel.ai.vault.delete(session, access.workspace, provider.lower(), actor=access.principal.subject,
                                       request=request)

        await run_in_threadpool(remove)
        return Response(status_code=204)

    @router.put("/budgets/api-keys/{api_key_id}", summary="Set an API key's monthly AI budget (US dollars)")
    async def put_budget(api_key_id: str, body: BudgetBody, access: WorkspaceAccess = Depends(admin)) -> dict[str, Any]:
        def store() -> dict[str, Any] | None:
            with kernel.session() as session:
                return kernel.ai.set_key_budget(session, access.workspace, api_key_id, body.monthly_usd,
                                                actor=access.principal.subject)

        return await run_in_threadpool(store) or {}

    @router.delete("/budgets/api-keys/{api_key_id}", status_code=204, summary="Remove an API key's AI budget")
    async def delete_budget(api_key_id: str, access: WorkspaceAccess = Depends(admin)) -> Response:
        def remove() -> None:
            with kernel.session() as session:
                kernel.ai.set_key_budget(session, access.workspace, api_key_id, None, actor=access.principal.subject)

        await run_in_threadpool(remove)
        return Response(status_code=204)

    @router.get("/budgets", summary="The workspace's API-key AI budgets")
    async def list_budgets(access: WorkspaceAccess = Depends(member)) -> dict[str, Any]:
        def read() -> list[dict[str, Any]]:
            from sqlalchemy import select

            with kernel.session() as session:
                rows = session.scalars(select(AIKeyBudget).where(AIKeyBudget.workspace == access.workspace)
                                       .order_by(AIKeyBudget.api_key_id))
                return [{"api_key_id": r.api_key_id, "monthly_usd": r.monthly_usd,
                         "updated_at": r.updated_at.isoformat()} for r in rows]

        return {"data": await run_in_threadpool(read)}

    return router
