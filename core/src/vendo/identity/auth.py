"""FastAPI dependencies for integrators' routes: who is calling, and may they?

::

    from fastapi import Depends
    from vendo import current_principal, require_role, require_scope

    @router.post("/workspaces/{workspace_id}/notes", dependencies=[Depends(require_scope("notes:write"))])
    def create_note(workspace_id: str, access = Depends(require_role("MEMBER"))):
        ...  # access.principal, access.workspace, access.role
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from vendo.capabilities import Principal
from vendo.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from vendo.identity.roles import Role, allows

WORKSPACE_HEADER = "x-vendo-workspace"
_MISSING = object()


@dataclass(frozen=True)
class WorkspaceAccess:
    """A principal's access to one workspace, as checked by :func:`require_role`."""

    principal: Principal
    workspace: str
    role: Role


async def optional_principal(request: Request) -> Principal | None:
    """The caller's principal, or ``None`` for an anonymous request (resolved once per request).

    :raises Unauthorized: credentials were presented and rejected.
    """
    cached = getattr(request.state, "principal", _MISSING)
    if cached is not _MISSING:
        return cached
    principal = await request.app.state.kernel.authenticate(request)
    request.state.principal = principal
    return principal


async def current_principal(request: Request) -> Principal:
    """The caller's principal.

    :raises Unauthorized: anonymous request, or rejected credentials (401).
    """
    principal = await optional_principal(request)
    if principal is None:
        raise Unauthorized("authentication required", code="authentication_required")
    return principal


def require_scope(*scopes: str) -> Callable[..., Any]:
    """A dependency refusing (403 ``missing_scope``) a credential without every scope named.
    Signed-in users hold every scope; API keys hold the scopes they were created with."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        missing = [s for s in scopes if s not in principal.scopes and "*" not in principal.scopes]
        if missing:
            raise Forbidden(f"this credential lacks the scope(s) {', '.join(missing)}", code="missing_scope",
                            details={"missing": missing})
        return principal

    return dependency


def _workspace_of(request: Request, principal: Principal, parameter: str) -> str:
    workspace = request.path_params.get(parameter) or principal.workspace or request.headers.get(WORKSPACE_HEADER)
    if not workspace:
        raise InvalidInput(f"name the workspace (path, or the {WORKSPACE_HEADER} header)", code="workspace_required")
    if principal.workspace is not None and principal.workspace != workspace:
        raise NotFound("workspace not found", code="workspace_not_found")  # a key never leaves its workspace
    return workspace


def _check(request: Request, principal: Principal, parameter: str, test: Callable[[Role], bool],
           refusal: Callable[[Role], Forbidden]) -> Callable[[], WorkspaceAccess]:
    workspace = _workspace_of(request, principal, parameter)
    kernel = request.app.state.kernel

    def lookup() -> WorkspaceAccess:
        with kernel.session() as session:
            role = kernel.identity.role_of(session, principal.subject, workspace)
        if role is None:
            raise NotFound("workspace not found", code="workspace_not_found")
        if not test(role):
            raise refusal(role)
        return WorkspaceAccess(principal, workspace, role)

    return lookup


def require_role(role: str, *, workspace_param: str = "workspace_id") -> Callable[..., Any]:
    """A dependency giving a :class:`WorkspaceAccess` when the caller's role in the workspace
    (path parameter ``workspace_param``, else the credential's workspace, else the
    ``X-Vendo-Workspace`` header) is at least ``role``. Non-members get 404, lesser roles 403."""
    least = Role(role.upper())

    async def dependency(request: Request, principal: Principal = Depends(current_principal)) -> WorkspaceAccess:
        lookup = _check(request, principal, workspace_param, lambda r: r.at_least(least),
                        lambda r: Forbidden(f"this needs the {least.value} role; you are {r.value}",
                                            code="insufficient_role", details={"role": r.value, "needed": least.value}))
        return await run_in_threadpool(lookup)

    return dependency


def require_permission(permission: str, *, workspace_param: str = "workspace_id") -> Callable[..., Any]:
    """Like :func:`require_role`, for a permission of the matrix (e.g. ``"features.use"``)."""
    allows("OWNER", permission)  # unknown permission names fail here, at route definition

    async def dependency(request: Request, principal: Principal = Depends(current_principal)) -> WorkspaceAccess:
        lookup = _check(request, principal, workspace_param, lambda r: allows(r, permission),
                        lambda r: Forbidden(f"your role ({r.value}) does not allow {permission}",
                                            code="insufficient_role", details={"role": r.value,
                                                                                 "permission": permission}))
        return await run_in_threadpool(lookup)

    return dependency
