"""HTTP routes, under ``/api/v1/workspaces/{workspace_id}/api-keys`` (ADMIN and up)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from vendo import Principal, current_principal
from vendo_auth_apikeys.service import ApiKeys

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel


class CreateBody(BaseModel):
    """A new key: what it may do, until when, in which environment and tier."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100, description="What the key is for, e.g. 'CI deploys'.")
    scopes: list[str] = Field(..., max_length=500, description="Scopes granted to the key ('*' only if allowed).")
    expires_at: Optional[datetime] = Field(None, description="When the key stops working (with a time zone).")
    environment: Optional[Literal["live", "test"]] = Field(None, description="Default: the plugin's setting.")
    rate_limit_tier: Optional[str] = Field(None, max_length=40, description="Default: default_rate_limit_tier.")


class RotateBody(BaseModel):
    """How long the old key keeps working after the rotation."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: Optional[int] = Field(None, ge=0, description="Default: default_grace_seconds; 0 ends it now.")


def build_router(kernel: Kernel, service: ApiKeys) -> APIRouter:
    """The API-key routes bound to ``kernel``."""
    router = APIRouter(prefix="/workspaces/{workspace_id}/api-keys", tags=["api keys"])

    @router.post("", status_code=201, summary="Create an API key (ADMIN+); the key is shown once")
    def create(workspace_id: str, body: CreateBody, request: Request,
               principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        with kernel.session() as session:
            row, key = service.create(session, principal, workspace_id, name=body.name, scopes=body.scopes,
                                      expires_at=body.expires_at, environment=body.environment,
                                      rate_limit_tier=body.rate_limit_tier, request=request)
            return {**row.as_dict(kernel.now(), True), "key": key}

    @router.get("", summary="The workspace's API keys, newest first (ADMIN+); never their secrets")
    def list_keys(workspace_id: str, include_revoked: bool = True,
                  principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        with kernel.session() as session:
            return {"data": service.list(session, principal, workspace_id, include_revoked=include_revoked)}

    @router.get("/{key_id}", summary="One API key (ADMIN+); never its secret")
    def get_key(workspace_id: str, key_id: str, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        with kernel.session() as session:
            return service.get(session, principal, workspace_id, key_id)

    @router.post("/{key_id}/rotate", status_code=201,
                 summary="Replace a key (ADMIN+); the new key is shown once, the old one works until grace ends")
    def rotate(workspace_id: str, key_id: str, request: Request, body: Optional[RotateBody] = None,
               principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        with kernel.session() as session:
            new, key, old = service.rotate(session, principal, workspace_id, key_id,
                                           grace_seconds=body.grace_seconds if body else None, request=request)
            now = kernel.now()
            return {**new.as_dict(now, True), "key": key, "previous": old.as_dict(now)}

    @router.delete("/{key_id}", status_code=204, summary="Revoke an API key at once (ADMIN+)")
    def revoke(workspace_id: str, key_id: str, request: Request,
               principal: Principal = Depends(current_principal)) -> None:
        with kernel.session() as session:
            service.revoke(session, principal, workspace_id, key_id, request=request)

    return router
