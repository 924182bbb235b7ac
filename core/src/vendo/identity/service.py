"""Users, workspaces, memberships and invitations: the rules, in one place.

Every method takes the caller's SQLAlchemy session, so a change, its audit entry and its
outbox event commit together or not at all. Permission checks use the matrix of
:mod:`vendo.identity.roles`; a workspace the caller does not belong to is reported as not
found (404), never as forbidden, so workspace ids cannot be probed.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendo.errors import Conflict, Forbidden, InvalidInput, NotFound, VendoError
from vendo.identity.models import Invitation, Membership, RefreshToken, User, Workspace
from vendo.identity.roles import Role, allows

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

INVITATION_PURPOSE = "invitation-token"
INVITATION_PREFIX = "vinv_"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class Gone(VendoError):
    """A single-use token that expired or was already used (410)."""

    code = "gone"
    status_code = 410


def new_id(prefix: str) -> str:
    """A random public id such as ``usr_3f9c...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def normalize_email(email: str) -> tuple[str, str]:
    """``(email as given, trimmed; lookup key, lower-cased)``.

    :raises InvalidInput: not an email address.
    """
    cleaned = (email or "").strip()
    if len(cleaned) > 320 or not _EMAIL.match(cleaned):
        raise InvalidInput(f"not a valid email address: {cleaned[:80]!r}", code="invalid_email")
    return cleaned, cleaned.lower()


#: Read on every workspace-scoped request: built once, so SQLAlchemy reuses its compiled form.
_ROLE_OF = select(Membership.role).where(Membership.user_id == bindparam("user_id"),
                                         Membership.workspace_id == bindparam("workspace_id"))


class Identity:
    """The identity domain service (``kernel.identity``)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    # -- users -------------------------------------------------------------------------

    def create_user(self, session: Session, email: str, *, name: str = "", verified: bool = False,
                    method: str = "", request: Any = None) -> User:
        """Create a user, their personal workspace and their OWNER membership.

        :raises Conflict: ``email_taken`` (case-insensitive).
        :raises InvalidInput: ``invalid_email``.
        """
        email, key = normalize_email(email)
        if session.scalar(select(User.id).where(User.email_key == key)) is not None:
            raise Conflict("an account with this email already exists", code="email_taken")
        now = self._kernel.now()
        user = User(id=new_id("usr"), email=email, email_key=key, name=name.strip()[:200],
                    email_verified_at=now if verified else None, created_at=now)
        workspace = Workspace(id=new_id("ws"), name=(name.strip() or email)[:190] + "'s workspace",
                              personal=True, created_at=now)
        try:
            with session.begin_nested():
                session.add_all([user, workspace])
                session.flush()
                session.add(Membership(workspace_id=workspace.id, user_id=user.id, role=Role.OWNER.value,
                                       created_at=now))
                session.flush()
        except IntegrityError:
            raise Conflict("an account with this email already exists", code="email_taken") from None
        self._kernel.audit.record(session, "user.created", actor=user.id, actor_label=email, workspace=workspace.id,
                                  target_type="user", target_id=user.id, details={"method": method}, request=request)
        self._kernel.outbox.publish(session, "identity.user.created",
                                    {"user_id": user.id, "workspace_id": workspace.id, "method": method})
        return user

    def user(self, session: Session, user_id: str) -> User:
        """A user by id.

        :raises NotFound: ``user_not_found``.
        """
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("user not found", code="user_not_found")
        return user

    def user_by_email(self, session: Session, email: str) -> User | None:
        """The user with this email (case-insensitive), if any."""
        return session.scalar(select(User).where(User.email_key == email.strip().lower()))

    def mark_email_verified(self, session: Session, user_id: str) -> None:
        """Record that the user proved they own their email address."""
        user = self.user(session, user_id)
        if user.email_verified_at is None:
            user.email_verified_at = self._kernel.now()

    def claim_account(self, session: Session, user_id: str, *, method: str, request: Any = None) -> bool:
        """The owner of the account's address proved it through ``method`` (e.g. ``oidc:google``):
        if the address was never verified, whoever created the account may not be that owner
        (account pre-hijacking), so every session ends, every plugin revokes the credentials it
        holds (hook ``vendo_revoke_user_credentials``, reason ``account_claimed``), the address is
        marked verified and the claim audited. Returns whether anything was revoked (``False``
        when the address was already verified: nothing changes)."""
        user = self.user(session, user_id)
        if user.email_verified_at is not None:
            return False
        self._kernel.sessions.revoke_user(session, user_id)
        self._kernel.hooks.call("vendo_revoke_user_credentials", user_id=user_id, reason="account_claimed",
                                session=session, kernel=self._kernel)
        user.email_verified_at = self._kernel.now()
        self._kernel.audit.record(session, "identity.account.claimed", actor=user_id, actor_label=user.email,
                                  target_type="user", target_id=user_id, details={"method": method},
                                  request=request)
        return True

    # -- workspaces -------------------------------------------------------------------------

    def memberships(self, session: Session, user_id: str) -> list[dict[str, Any]]:
        """The user's workspaces with their role, oldest first."""
        rows = session.execute(
            select(Workspace, Membership.role).join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user_id).order_by(Membership.id)
        )
        return [self.workspace_dict(workspace, role) for workspace, role in rows]

    @staticmethod
    def workspace_dict(workspace: Workspace, role: str | None = None) -> dict[str, Any]:
        """A workspace as JSON-compatible data (with the caller's role when given)."""
        data = {"id": workspace.id, "name": workspace.name, "personal": workspace.personal,
                "created_at": workspace.created_at.isoformat()}
        if role is not None:
            data["role"] = role
        return data

    def role_of(self, session: Session, user_id: str, workspace_id: str) -> Role | None:
        """The user's role in the workspace, or ``None`` when not a member."""
        role = session.scalar(_ROLE_OF, {"user_id": user_id, "workspace_id": workspace_id})
        return Role(role) if role else None

    def authorize(self, session: Session, user_id: str, workspace_id: str, permission: str) -> Role:
        """The user's role, if it holds ``permission`` in the workspace.

        :raises NotFound: not a member (``workspace_not_found``: existence is not revealed).
        :raises Forbidden: a member whose role lacks the permission.
        """
        role = self.role_of(session, user_id, workspace_id)
        if role is None:
            raise NotFound("workspace not found", code="workspace_not_found")
        if not allows(role, permission):
            raise Forbidden(f"your role ({role.value}) does not allow {permission}", code="insufficient_role",
                            details={"role": role.value, "permission": permission})
        return role

    def create_workspace(self, session: Session, owner_id: str, name: str, request: Any = None) -> Workspace:
        """A shared workspace owned by ``owner_id``."""
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("workspace name must be 1 to 200 characters", code="invalid_name")
        now = self._kernel.now()
        workspace = Workspace(id=new_id("ws"), name=name, personal=False, created_at=now)
        session.add(workspace)
        session.flush()
        session.add(Membership(workspace_id=workspace.id, user_id=owner_id, role=Role.OWNER.value, created_at=now))
        self._kernel.audit.record(session, "workspace.created", actor=owner_id, workspace=workspace.id,
                                  target_type="workspace", target_id=workspace.id, details={"name": name},
                                  request=request)
        return workspace

    def rename_workspace(self, session: Session, actor: str, workspace_id: str, name: str,
                         request: Any = None) -> Workspace:
        """Rename (ADMIN and up)."""
        self.authorize(session, actor, workspace_id, "workspace.update")
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("workspace name must be 1 to 200 characters", code="invalid_name")
        workspace = session.get(Workspace, workspace_id)
        old, workspace.name = workspace.name, name
        self._kernel.audit.record(session, "workspace.renamed", actor=actor, workspace=workspace_id,
                                  target_type="workspace", target_id=workspace_id,
                                  details={"from": old, "to": name}, request=request)
        return workspace

    def delete_workspace(self, session: Session, actor: str, workspace_id: str, request: Any = None) -> None:
        """Delete a shared workspace (OWNER only; a personal workspace goes with its user)."""
        self.authorize(session, actor, workspace_id, "workspace.delete")
        workspace = session.get(Workspace, workspace_id)
        if workspace.personal:
            raise Conflict("a personal workspace is deleted with its account", code="personal_workspace")
        self._kernel.hooks.call("vendo_erase_workspace_data", workspace_id=workspace_id, session=session,
                                kernel=self._kernel)
        session.execute(delete(Invitation).where(Invitation.workspace_id == workspace_id))
        session.execute(delete(Membership).where(Membership.workspace_id == workspace_id))
        session.delete(workspace)
        self._kernel.audit.record(session, "workspace.deleted", actor=actor, workspace=workspace_id,
                                  target_type="workspace", target_id=workspace_id, request=request)
        self._kernel.outbox.publish(session, "identity.workspace.deleted", {"workspace_id": workspace_id})

    # -- members -------------------------------------------------------------------------------

    def members(self, session: Session, actor: str, workspace_id: str) -> list[dict[str, Any]]:
        """Members with their role (ADMIN and up)."""
        self.authorize(session, actor, workspace_id, "members.read")
        rows = session.execute(
            select(User, Membership).join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id).order_by(Membership.id)
        )
        return [{"user_id": user.id, "email": user.email, "name": user.name, "role": membership.role,
                 "joined_at": membership.created_at.isoformat()} for user, membership in rows]

    def change_role(self, session: Session, actor: str, workspace_id: str, user_id: str, role: str,
                    request: Any = None) -> None:
        """Change a member's role (ADMIN and up; OWNER changes only by transfer)."""
        self.authorize(session, actor, workspace_id, "members.change_role")
        new_role = _parse_role(role)
        if new_role is Role.OWNER:
            raise InvalidInput("ownership changes only by transfer-ownership", code="use_transfer")
        membership = self._membership(session, workspace_id, user_id)
        if membership.role == Role.OWNER.value:
            raise Conflict("the owner's role changes only by transferring ownership", code="owner_required")
        old, membership.role = membership.role, new_role.value
        self._kernel.audit.record(session, "member.role_changed", actor=actor, workspace=workspace_id,
                                  target_type="user", target_id=user_id, details={"from": old, "to": new_role.value},
                                  request=request)

    def remove_member(self, session: Session, actor: str, workspace_id: str, user_id: str,
                      request: Any = None) -> None:
        """Remove a member (ADMIN and up), or leave (anyone but the owner)."""
        if actor == user_id:
            self.authorize(session, actor, workspace_id, "workspace.read")
        else:
            self.authorize(session, actor, workspace_id, "members.remove")
        membership = self._membership(session, workspace_id, user_id)
        if membership.role == Role.OWNER.value:
            raise Conflict("the owner cannot leave or be removed: transfer ownership first", code="owner_required")
        session.delete(membership)
        self._kernel.audit.record(session, "member.left" if actor == user_id else "member.removed", actor=actor,
                                  workspace=workspace_id, target_type="user", target_id=user_id, request=request)

    def transfer_ownership(self, session: Session, actor: str, workspace_id: str, user_id: str,
                           request: Any = None) -> None:
        """Make another member the owner; the old owner becomes ADMIN."""
        self.authorize(session, actor, workspace_id, "workspace.transfer")
        if user_id == actor:
            raise InvalidInput("you already own this workspace", code="already_owner")
        target = self._membership(session, workspace_id, user_id)
        current = self._membership(session, workspace_id, actor)
        current.role = Role.ADMIN.value
        session.flush()  # one owner at a time: demote before promoting
        target.role = Role.OWNER.value
        self._kernel.audit.record(session, "workspace.ownership_transferred", actor=actor, workspace=workspace_id,
                                  target_type="user", target_id=user_id, request=request)

    def _membership(self, session: Session, workspace_id: str, user_id: str) -> Membership:
        membership = session.scalar(select(Membership).where(Membership.workspace_id == workspace_id,
                                                             Membership.user_id == user_id))
        if membership is None:
            raise NotFound("no such member in this workspace", code="member_not_found")
        return membership

    # -- invitations ------------------------------------------------------------------------------

    def invite(self, session: Session, actor: str, workspace_id: str, email: str, role: str = "MEMBER",
               request: Any = None) -> tuple[Invitation, str]:
        """Invite an email address; return the invitation and its token (shown once).

        A pending invitation of the same address is replaced. In the same transaction the
        outbox gets ``identity.invitation.created`` (without the token) and the email
        ``notification.requested`` (template ``invitation``: workspace and inviter in clear,
        accept_url from ``notifications.invitation_url`` sealed as secret context). The token
        is stored nowhere in clear: the invitation keeps a keyed hash, the email its sealed link.
        """
        self.authorize(session, actor, workspace_id, "members.invite")
        new_role = _parse_role(role)
        if new_role is Role.OWNER:
            raise InvalidInput("invite as ADMIN, MEMBER or VIEWER; ownership changes by transfer", code="use_transfer")
        email, key = normalize_email(email)
        already = session.scalar(select(Membership.id).join(User, User.id == Membership.user_id)
                                 .where(Membership.workspace_id == workspace_id, User.email_key == key))
        if already is not None:
            raise Conflict(f"{email} is already a member", code="already_member")
        now = self._kernel.now()
        session.execute(update(Invitation).where(
            Invitation.workspace_id == workspace_id, Invitation.email_key == key,
            Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
        ).values(revoked_at=now))
        token = INVITATION_PREFIX + secrets.token_urlsafe(32)
        invitation = Invitation(
            id=new_id("inv"), workspace_id=workspace_id, email=email, email_key=key, role=new_role.value,
            token_hash=self._kernel.secrets.keyed_hash(INVITATION_PURPOSE, token), invited_by=actor,
            created_at=now, expires_at=now + timedelta(seconds=self._kernel.settings.sessions.invitation_ttl),
        )
        session.add(invitation)
        workspace = session.get(Workspace, workspace_id)
        inviter = session.get(User, actor)
        self._kernel.audit.record(session, "invitation.created", actor=actor, workspace=workspace_id,
                                  target_type="invitation", target_id=invitation.id,
                                  details={"email": email, "role": new_role.value}, request=request)
        self._kernel.outbox.publish(session, "identity.invitation.created", {
            "invitation_id": invitation.id, "workspace_id": workspace_id, "workspace_name": workspace.name,
            "email": email, "role": new_role.value, "expires_at": invitation.expires_at.isoformat(),
        })
        links = self._kernel.notifications
        self._kernel.notify(session, to=email, template="invitation", idempotency_key=f"invitation:{invitation.id}",
                            context={"workspace": workspace.name,
                                     "inviter": (inviter.name or inviter.email) if inviter else "A teammate"},
                            secret_context={"accept_url": links.link(
                                self._kernel.settings.notifications.invitation_url, token=token)})
        return invitation, token

    def invitation_dict(self, invitation: Invitation) -> dict[str, Any]:
        """An invitation as JSON-compatible data, with its status (never its token)."""
        if invitation.accepted_at is not None:
            status = "accepted"
        elif invitation.revoked_at is not None:
            status = "revoked"
        elif invitation.expires_at <= self._kernel.now():
            status = "expired"
        else:
            status = "pending"
        return {"id": invitation.id, "workspace_id": invitation.workspace_id, "email": invitation.email,
                "role": invitation.role, "status": status, "created_at": invitation.created_at.isoformat(),
                "expires_at": invitation.expires_at.isoformat()}

    def invitations(self, session: Session, actor: str, workspace_id: str) -> list[dict[str, Any]]:
        """The workspace's invitations, newest first (ADMIN and up)."""
        self.authorize(session, actor, workspace_id, "members.invite")
        rows = session.scalars(select(Invitation).where(Invitation.workspace_id == workspace_id)
                               .order_by(Invitation.created_at.desc()))
        return [self.invitation_dict(invitation) for invitation in rows]

    def revoke_invitation(self, session: Session, actor: str, workspace_id: str, invitation_id: str,
                          request: Any = None) -> None:
        """Revoke a pending invitation (ADMIN and up)."""
        self.authorize(session, actor, workspace_id, "members.invite")
        invitation = session.get(Invitation, invitation_id)
        if invitation is None or invitation.workspace_id != workspace_id:
            raise NotFound("invitation not found", code="invitation_not_found")
        if invitation.accepted_at is not None:
            raise Conflict("this invitation was already accepted", code="invitation_used")
        if invitation.revoked_at is None:
            invitation.revoked_at = self._kernel.now()
            self._kernel.audit.record(session, "invitation.revoked", actor=actor, workspace=workspace_id,
                                      target_type="invitation", target_id=invitation_id, request=request)

    def accept_invitation(self, session: Session, user_id: str, token: str, request: Any = None) -> dict[str, Any]:
        """Join the workspace an invitation names; single use, invited address only.

        :raises InvalidInput: unknown token (``invalid_token``, 400).
        :raises Gone: ``invitation_used``, ``invitation_revoked`` or ``invitation_expired`` (410).
        :raises Forbidden: ``invitation_email_mismatch``: signed in with another address.
        """
        if not isinstance(token, str) or not token.startswith(INVITATION_PREFIX):
            raise InvalidInput("invalid invitation token", code="invalid_token", status_code=400)
        invitation = session.scalar(select(Invitation).where(
            Invitation.token_hash == self._kernel.secrets.keyed_hash(INVITATION_PURPOSE, token)))
        if invitation is None:
            raise InvalidInput("invalid invitation token", code="invalid_token", status_code=400)
        if invitation.accepted_at is not None:
            raise Gone("this invitation was already used", code="invitation_used")
        if invitation.revoked_at is not None:
            raise Gone("this invitation was revoked", code="invitation_revoked")
        now = self._kernel.now()
        if invitation.expires_at <= now:
            raise Gone("this invitation expired: ask for a new one", code="invitation_expired")
        user = self.user(session, user_id)
        if user.email_key != invitation.email_key:
            raise Forbidden("this invitation was sent to another email address", code="invitation_email_mismatch")
        claimed = session.execute(update(Invitation).where(Invitation.id == invitation.id,
                                                           Invitation.accepted_at.is_(None))
                                  .values(accepted_at=now)).rowcount
        if claimed != 1:
            raise Gone("this invitation was already used", code="invitation_used")
        if self.role_of(session, user_id, invitation.workspace_id) is None:
            session.add(Membership(workspace_id=invitation.workspace_id, user_id=user_id, role=invitation.role,
                                   created_at=now))
        self._kernel.audit.record(session, "invitation.accepted", actor=user_id, workspace=invitation.workspace_id,
                                  target_type="invitation", target_id=invitation.id,
                                  details={"role": invitation.role}, request=request)
        return self.workspace_dict(session.get(Workspace, invitation.workspace_id), invitation.role)

    # -- GDPR --------------------------------------------------------------------------------------

    def export_user(self, session: Session, user_id: str) -> dict[str, Any]:
        """Everything Vendo and its plugins hold about a user, as one JSON document."""
        user = self.user(session, user_id)
        from vendo.identity.models import AuditEntry

        audit = session.scalars(select(AuditEntry).where(AuditEntry.actor_id == user_id).order_by(AuditEntry.id))
        document: dict[str, Any] = {
            "user": {"id": user.id, "email": user.email, "name": user.name, "created_at": user.created_at.isoformat(),
                     "email_verified_at": user.email_verified_at.isoformat() if user.email_verified_at else None},
            "memberships": self.memberships(session, user_id),
            "sessions": [{"created_at": t.created_at.isoformat(), "method": t.method,
                          "revoked": t.revoked_at is not None}
                         for t in session.scalars(select(RefreshToken).where(RefreshToken.user_id == user_id,
                                                                             RefreshToken.used_at.is_(None)))],
            "audit": [self._kernel.audit.as_dict(entry) for entry in audit],
            "plugins": {},
        }
        for plugin, data in self._kernel.hooks.call("vendo_export_user_data", user_id=user_id, session=session,
                                                    kernel=self._kernel):
            document["plugins"][plugin] = data
        return document

    def erase_user(self, session: Session, user_id: str, request: Any = None) -> None:
        """Delete an account: memberships, sessions, plugin data and personal workspace go;
        audit entries stay, anonymised.

        :raises Conflict: ``owner_required`` while the user owns a workspace with other members.
        """
        user = self.user(session, user_id)
        owned = session.scalars(select(Workspace).join(Membership, Membership.workspace_id == Workspace.id)
                                .where(Membership.user_id == user_id, Membership.role == Role.OWNER.value)).all()
        shared = [w for w in owned if self._member_count(session, w.id) > 1]
        if shared:
            raise Conflict(
                "transfer ownership of these workspaces first: " + ", ".join(f"{w.name} ({w.id})" for w in shared),
                code="owner_required", details={"workspaces": [w.id for w in shared]},
            )
        self._kernel.hooks.call("vendo_erase_user_data", user_id=user_id, session=session, kernel=self._kernel)
        for workspace in owned:
            self._kernel.hooks.call("vendo_erase_workspace_data", workspace_id=workspace.id, session=session,
                                    kernel=self._kernel)
            session.execute(delete(Invitation).where(Invitation.workspace_id == workspace.id))
            session.execute(delete(Membership).where(Membership.workspace_id == workspace.id))
            session.delete(workspace)
        session.execute(delete(Membership).where(Membership.user_id == user_id))
        session.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
        session.execute(update(Invitation).where(Invitation.invited_by == user_id).values(invited_by=None))
        email = user.email
        session.delete(user)
        session.flush()
        self._kernel.audit.anonymise(session, user_id, email)
        self._kernel.audit.record(session, "user.erased", target_type="user", target_id="erased user", request=request)
        self._kernel.outbox.publish(session, "identity.user.erased", {"user_id": user_id})

    def _member_count(self, session: Session, workspace_id: str) -> int:
        return session.scalar(select(func.count()).select_from(Membership)
                              .where(Membership.workspace_id == workspace_id)) or 0


def _parse_role(role: str) -> Role:
    try:
        return Role(str(role).upper())
    except ValueError:
        raise InvalidInput(f"unknown role {role!r}: use OWNER, ADMIN, MEMBER or VIEWER", code="invalid_role") from None
