"""HTTP routes of the identity domain, under ``/api/v1``.

``me``, ``auth/refresh``, ``auth/logout``, ``workspaces`` (CRUD, members, ownership transfer,
invitations, audit log) and ``invitations/accept``. Signing in is done by auth plugins
(password, OIDC...), which call ``kernel.sessions.issue``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from vendo.capabilities import Principal
from vendo.identity.auth import current_principal

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel


class RefreshBody(BaseModel):
    refresh_token: str = Field(..., min_length=1, max_length=512)


class WorkspaceBody(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)


class RoleBody(BaseModel):
    role: str = Field(..., description="ADMIN, MEMBER or VIEWER")


class TransferBody(BaseModel):
    user_id: str


class InvitationBody(BaseModel):
    email: str = Field(..., max_length=320)
    role: str = "MEMBER"


class AcceptBody(BaseModel):
    token: str = Field(..., min_length=1, max_length=512)


def build_router(kernel: Kernel) -> APIRouter:
    """The identity routes bound to ``kernel``."""
    router = APIRouter(tags=["identity"])
    identity = kernel.identity

    # -- me and sessions ------------------------------------------------------------------

    @router.get("/me", summary="The signed-in user and their workspaces")
    def me(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        with kernel.session() as session:
            user = identity.user(session, principal.subject)
            workspaces = identity.memberships(session, user.id)
        if principal.workspace is not None:  # a workspace credential sees its workspace only
            workspaces = [w for w in workspaces if w["id"] == principal.workspace]
        return {"id": user.id, "email": user.email, "name": user.name,
                "email_verified": user.email_verified_at is not None, "method": principal.method,
                "workspaces": workspaces}

    @router.get("/me/export", summary="Everything held about me (GDPR), as one JSON document")
    def export(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _user_only(principal)
        with kernel.session() as session:
            return identity.export_user(session, principal.subject)

    @router.delete("/me", status_code=204, summary="Delete my account (GDPR)")
    def erase(request: Request, principal: Principal = Depends(current_principal)) -> None:
        _user_only(principal)
        with kernel.session() as session:
            identity.erase_user(session, principal.subject, request=request)

    @router.post("/auth/refresh", summary="Exchange a refresh token for a new token pair")
    def refresh(body: RefreshBody, request: Request) -> dict[str, Any]:
        return kernel.sessions.refresh(body.refresh_token, request=request).to_dict()

    @router.post("/auth/logout", status_code=204, summary="End the session of a refresh token")
    def logout(body: RefreshBody, request: Request) -> None:
        user_id = kernel.sessions.revoke(body.refresh_token)
        kernel.audit.record_now("auth.logout", actor=user_id, request=request)

    # -- workspaces -----------------------------------------------------------------------

    @router.get("/workspaces", summary="My workspaces")
    def workspaces(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        with kernel.session() as session:
            items = identity.memberships(session, principal.subject)
        if principal.workspace is not None:
            items = [w for w in items if w["id"] == principal.workspace]
        return {"data": items}

    @router.post("/workspaces", status_code=201, summary="Create a shared workspace (you own it)")
    def create_workspace(body: WorkspaceBody, request: Request,
                         principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _user_only(principal)
        with kernel.session() as session:
            return identity.workspace_dict(identity.create_workspace(session, principal.subject, body.name, request),
                                           "OWNER")

    @router.get("/workspaces/{workspace_id}", summary="One workspace")
    def get_workspace(workspace_id: str, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _same_workspace(principal, workspace_id)
        with kernel.session() as session:
            role = identity.authorize(session, principal.subject, workspace_id, "workspace.read")
            from vendo.identity.models import Workspace

            return identity.workspace_dict(session.get(Workspace, workspace_id), role.value)

    @router.patch("/workspaces/{workspace_id}", summary="Rename a workspace (ADMIN+)")
    def rename(workspace_id: str, body: WorkspaceBody, request: Request,
               principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _same_workspace(principal, workspace_id)
        _admin_scope(principal)
        with kernel.session() as session:
            return identity.workspace_dict(identity.rename_workspace(session, principal.subject, workspace_id,
                                                                     body.name, request))

    @router.delete("/workspaces/{workspace_id}", status_code=204, summary="Delete a shared workspace (OWNER)")
    def delete_workspace(workspace_id: str, request: Request,
                         principal: Principal = Depends(current_principal)) -> None:
        _same_workspace(principal, workspace_id)
        _admin_scope(principal)
        with kernel.session() as session:
            identity.delete_workspace(session, principal.subject, workspace_id, request)

    @router.post("/workspaces/{workspace_id}/transfer-ownership", status_code=204,
                 summary="Make another member the owner (OWNER)")
    def transfer(workspace_id: str, body: TransferBody, request: Request,
                 principal: Principal = Depends(current_principal)) -> None:
        _user_only(principal)
        with kernel.session() as session:
            identity.transfer_ownership(session, principal.subject, workspace_id, body.user_id, request)

    # -- members ------------------------------------------------------------------------------

    @router.get("/workspaces/{workspace_id}/members", summary="Members and roles (ADMIN+)")
    def members(workspace_id: str, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _same_workspace(principal, workspace_id)
        with kernel.session() as session:
            return {"data": identity.members(session, principal.subject, workspace_id)}

    @router.patch("/workspaces/{workspace_id}/members/{user_id}", status_code=204,
                  summary="Change a member's role (ADMIN+)")
    def change_role(workspace_id: str, user_id: str, body: RoleBody, request: Request,
                    principal: Principal = Depends(current_principal)) -> None:
        _same_workspace(principal, workspace_id)
        _admin_scope(principal)
        with kernel.session() as session:
            identity.change_role(session, principal.subject, workspace_id, user_id, body.role, request)

    @router.delete("/workspaces/{workspace_id}/members/{user_id}", status_code=204,
                   summary="Remove a member (ADMIN+), or leave (yourself)")
    def remove_member(workspace_id: str, user_id: str, request: Request,
                      principal: Principal = Depends(current_principal)) -> None:
        _same_workspace(principal, workspace_id)
        _admin_scope(principal)
        with kernel.session() as session:
            identity.remove_member(session, principal.subject, workspace_id, user_id, request)

    # -- invitations ------------------------------------------------------------------------------

    @router.post("/workspaces/{workspace_id}/invitations", status_code=201,
                 summary="Invite someone by email (ADMIN+); the token is shown once")
    def invite(workspace_id: str, body: InvitationBody, request: Request,
               principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _same_workspace(principal, workspace_id)
        _admin_scope(principal)
        with kernel.session() as session:
            invitation, token = identity.invite(session, principal.subject, workspace_id, body.email, body.role,
                                                request)
            return {**identity.invitation_dict(invitation), "token": token}

    @router.get("/workspaces/{workspace_id}/invitations", summary="Invitations (ADMIN+)")
    def invitations(workspace_id: str, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _same_workspace(principal, workspace_id)
        with kernel.session() as session:
            return {"data": identity.invitations(session, principal.subject, workspace_id)}

    @router.delete("/workspaces/{workspace_id}/invitations/{invitation_id}", status_code=204,
                   summary="Revoke an invitation (ADMIN+)")
    def revoke_invitation(workspace_id: str, invitation_id: str, request: Request,
                          principal: Principal = Depends(current_principal)) -> None:
        _same_workspace(principal, workspace_id)
        _admin_scope(principal)
        with kernel.session() as session:
            identity.revoke_invitation(session, principal.subject, workspace_id, invitation_id, request)

    @router.post("/invitations/accept", summary="Join a workspace with an invitation token")
    def accept(body: AcceptBody, request: Request, principal: Principal = Depends(current_principal)) -> dict[str, Any]:
        _user_only(principal)
        with kernel.session() as session:
            return identity.accept_invitation(session, principal.subject, body.token, request)

    # -- audit log -----------------------------------------------------------------------------------

    def _audit_filters(action: Optional[str], actor: Optional[str], since: Optional[datetime],
                       until: Optional[datetime]) -> dict[str, Any]:
        return {"action": action, "actor": actor, "since": since, "until": until}

    @router.get("/workspaces/{workspace_id}/audit", summary="Audit log, newest first (ADMIN+)")
    def audit(workspace_id: str, principal: Principal = Depends(current_principal),
              action: Optional[str] = None, actor: Optional[str] = None, since: Optional[datetime] = None,
              until: Optional[datetime] = None, limit: int = Query(100, ge=1, le=1000),
              before: Optional[int] = None) -> dict[str, Any]:
        _same_workspace(principal, workspace_id)
        with kernel.session() as session:
            identity.authorize(session, principal.subject, workspace_id, "audit.read")
        return {"data": kernel.audit.query(workspace_id, limit=limit, before=before,
                                           **_audit_filters(action, actor, since, until))}

    @router.get("/workspaces/{workspace_id}/audit/export", summary="Audit log as JSON lines (ADMIN+)")
    def audit_export(workspace_id: str, principal: Principal = Depends(current_principal),
                     action: Optional[str] = None, actor: Optional[str] = None, since: Optional[datetime] = None,
                     until: Optional[datetime] = None) -> StreamingResponse:
        _same_workspace(principal, workspace_id)
        with kernel.session() as session:
            identity.authorize(session, principal.subject, workspace_id, "audit.read")
        lines = kernel.audit.export_lines(workspace_id, **_audit_filters(action, actor, since, until))
        return StreamingResponse(lines, media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="audit-{workspace_id}.jsonl"'})

    return router


def _same_workspace(principal: Principal, workspace_id: str) -> None:
    """A credential bound to a workspace (an API key) never reaches another one."""
    from vendo.errors import NotFound

    if principal.workspace is not None and principal.workspace != workspace_id:
        raise NotFound("workspace not found", code="workspace_not_found")


def _user_only(principal: Principal) -> None:
    """Account-level actions need a signed-in user, not a workspace credential."""
    from vendo.errors import Forbidden

    if principal.workspace is not None:
        raise Forbidden("this action needs a signed-in user, not a workspace API key", code="user_required")


def _admin_scope(principal: Principal) -> None:
    """Changing a workspace's members or settings with an API key needs the ``workspace:admin`` scope."""
    from vendo.errors import Forbidden

    if "*" not in principal.scopes and "workspace:admin" not in principal.scopes:
        raise Forbidden("this credential lacks the scope workspace:admin", code="missing_scope",
                        details={"missing": ["workspace:admin"]})
