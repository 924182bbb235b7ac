"""From an external identity to a Vendo user and a session: links, linking rules, GDPR.

The rules, in order:

1. a link (provider, subject) exists → its user;
2. else a user has the same email and the provider says it is verified → link to that user
   (account linking by verified email). If that account's own address was never verified,
   the account is claimed (``kernel.identity.claim_account``): its sessions end and every
   plugin revokes the credentials it holds (its password, second factor, API keys), then the
   address is marked verified: whoever created it without proving the address keeps no way
   into an account now owned by the address's verified holder;
3. else a user has the same email, not verified by the provider → 409 ``email_unverified``,
   never linked;
4. else a new user (``verified`` only if the provider verified the address) and its link.

The user, the link, the session and the audit entries commit together or not at all.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendo import Conflict
from vendo_auth_oidc import errors
from vendo_auth_oidc.models import IdentityLink

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel
    from vendo_auth_oidc.upstream import ExternalIdentity

#: How many times a sign-in is tried when a concurrent one created the same user or link.
ATTEMPTS = 2


def session_method(provider: str) -> str:
    """The method recorded on sessions and access tokens (``amr``): ``oidc:<provider>``."""
    return f"oidc:{provider}"


class Accounts:
    """Signs external identities in as Vendo users."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def sign_in(self, provider: str, who: ExternalIdentity, request: Any = None) -> Any:
        """Find, link or create the user and start a session: the kernel's ``TokenPair``.

        :raises Conflict: ``email_unverified``.
        :raises InvalidInput: ``email_required`` (no address for a new account), or the
            kernel's ``invalid_email``.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._kernel.session() as session:
                    return self._sign_in(session, provider, who, request)
            except IntegrityError:
                if attempt == ATTEMPTS:
                    raise
            except Conflict as exc:  # a concurrent sign-in created the same user first
                if exc.code != "email_taken" or attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _sign_in(self, session: Session, provider: str, who: ExternalIdentity, request: Any) -> Any:
        kernel = self._kernel
        identity = kernel.identity
        now = kernel.now()
        link = session.scalar(select(IdentityLink).where(IdentityLink.provider == provider,
                                                         IdentityLink.subject == who.subject))
        new_user = False
        if link is not None:
            user = identity.user(session, link.user_id)
            link.last_login_at = now
            if who.email_verified and who.email and user.email_key == who.email.lower():
                identity.mark_email_verified(session, user.id)
        else:
            if not who.email:
                raise errors.email_required(provider)
            user = identity.user_by_email(session, who.email)
            if user is not None:
                if not who.email_verified:
                    raise errors.email_unverified(provider)
                identity.claim_account(session, user.id, method=f"oidc:{provider}", request=request)
                how = "verified_email"
            else:
                user = identity.create_user(session, who.email, name=who.name, verified=who.email_verified,
                                            method="oidc", request=request)
                new_user, how = True, "sign_up"
            session.add(IdentityLink(id=f"oidl_{uuid.uuid4().hex}", provider=provider, subject=who.subject,
                                     user_id=user.id, email=who.email, email_verified=who.email_verified,
                                     created_at=now, last_login_at=now))
            session.flush()
            kernel.audit.record(session, "auth.oidc.linked", actor=user.id, actor_label=user.email,
                                target_type="user", target_id=user.id, details={"provider": provider, "by": how},
                                request=request)
        pair = kernel.sessions.issue(session, user.id, session_method(provider))
        kernel.audit.record(session, "auth.oidc.sign_in", actor=user.id, actor_label=user.email,
                            details={"provider": provider, "new_user": new_user}, request=request)
        return pair

    # -- GDPR -------------------------------------------------------------------------------

    @staticmethod
    def export(session: Session, user_id: str) -> dict[str, Any] | None:
        """The user's linked provider accounts, or ``None`` when there are none."""
        links = session.scalars(select(IdentityLink).where(IdentityLink.user_id == user_id)
                                .order_by(IdentityLink.created_at, IdentityLink.id)).all()
        if not links:
            return None
        return {"linked_accounts": [
            {"provider": link.provider, "subject": link.subject, "email_at_link_time": link.email,
             "email_verified_by_provider": link.email_verified, "linked_at": link.created_at.isoformat(),
             "last_sign_in_at": link.last_login_at.isoformat()}
            for link in links
        ]}

    @staticmethod
    def erase(session: Session, user_id: str) -> None:
        """Delete the user's links (in the erasure's transaction)."""
        session.execute(delete(IdentityLink).where(IdentityLink.user_id == user_id))
