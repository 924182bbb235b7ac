"""Sign-in sessions: short-lived JWT access tokens and rotating refresh tokens.

An access token (HS256, key derived from the master secret) lives ``sessions.access_ttl``
seconds and is checked without a database round trip. A refresh token
(``vrt_<id>.<secret>``, stored only as a keyed hash) is single-use: refreshing marks it used
and issues the next one of the same family. Presenting a used token again is treated as
theft: the whole family is revoked and recorded in the audit log.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vendo.capabilities import Principal
from vendo.errors import Unauthorized
from vendo.identity.models import RefreshToken, User

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

ISSUER = "vendo"
JWT_PURPOSE = "session-jwt"
REFRESH_PURPOSE = "refresh-token"
REFRESH_PREFIX = "vrt_"


@dataclass(frozen=True)
class TokenPair:
    """What a sign-in returns to the client."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"

    def to_dict(self) -> dict[str, Any]:
        """The OAuth2-style JSON body."""
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": self.token_type, "expires_in": self.expires_in}


class Sessions:
    """Issues, refreshes, verifies and revokes session tokens."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._jwt_key: bytes | None = None

    @property
    def _key(self) -> bytes:
        if self._jwt_key is None:
            self._jwt_key = self._kernel.secrets.derive(JWT_PURPOSE)
        return self._jwt_key

    def _access_token(self, user_id: str, family: str, method: str) -> str:
        import jwt

        now = self._kernel.now()
        claims = {"iss": ISSUER, "sub": user_id, "sid": family, "amr": method, "iat": int(now.timestamp()),
                  "exp": int((now + timedelta(seconds=self._kernel.settings.sessions.access_ttl)).timestamp())}
        return jwt.encode(claims, self._key, algorithm="HS256")

    def _new_refresh(self, session: Session, user_id: str, family: str, method: str) -> str:
        token_id = uuid.uuid4().hex
        secret = secrets.token_urlsafe(32)
        now = self._kernel.now()
        session.add(RefreshToken(
            id=token_id, family_id=family, user_id=user_id, method=method,
            secret_hash=self._kernel.secrets.keyed_hash(REFRESH_PURPOSE, secret), created_at=now,
            expires_at=now + timedelta(seconds=self._kernel.settings.sessions.refresh_ttl),
        ))
        return f"{REFRESH_PREFIX}{token_id}.{secret}"

    def issue(self, session: Session, user_id: str, method: str) -> TokenPair:
        """Start a session for ``user_id`` (authenticated by ``method``) in ``session``'s transaction."""
        family = uuid.uuid4().hex
        refresh = self._new_refresh(session, user_id, family, method)
        return TokenPair(self._access_token(user_id, family, method), refresh, self._kernel.settings.sessions.access_ttl)

    def _find(self, session: Session, token: str) -> RefreshToken:
        if not isinstance(token, str) or not token.startswith(REFRESH_PREFIX) or "." not in token:
            raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
        token_id, _, secret = token[len(REFRESH_PREFIX):].partition(".")
        row = session.get(RefreshToken, token_id)
        expected = row.secret_hash if row is not None else "0" * 64
        given = self._kernel.secrets.keyed_hash(REFRESH_PURPOSE, secret)
        if not hmac.compare_digest(expected, given) or row is None:
            raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
        return row

    def refresh(self, token: str, request: Any = None) -> TokenPair:
        """Exchange a refresh token for a new pair; a reused token revokes its whole family.

        :raises Unauthorized: unknown, expired, revoked or reused token.
        """
        reused: RefreshToken | None = None
        with self._kernel.session() as session:
            row = self._find(session, token)
            now = self._kernel.now()
            if row.revoked_at is not None or row.expires_at <= now:
                raise Unauthorized("refresh token expired or revoked", code="invalid_refresh_token")
            claimed = session.execute(
                update(RefreshToken).where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
            ).rowcount
            if claimed == 1:
                next_token = self._new_refresh(session, row.user_id, row.family_id, row.method)
                return TokenPair(self._access_token(row.user_id, row.family_id, row.method), next_token,
                                 self._kernel.settings.sessions.access_ttl)
            reused = row
        with self._kernel.session() as session:
            session.execute(update(RefreshToken).where(RefreshToken.family_id == reused.family_id,
                                                       RefreshToken.revoked_at.is_(None))
                            .values(revoked_at=self._kernel.now()))
            self._kernel.audit.record(session, "auth.refresh_token_reused", actor=reused.user_id, outcome="failure",
                                      details={"family": reused.family_id}, request=request)
        raise Unauthorized("refresh token already used: the session was revoked", code="refresh_token_reused")

    def revoke(self, token: str) -> str:
        """End the session of a refresh token (logout); return its user id.

        :raises Unauthorized: not a valid refresh token.
        """
        with self._kernel.session() as session:
            row = self._find(session, token)
            session.execute(update(RefreshToken).where(RefreshToken.family_id == row.family_id,
                                                       RefreshToken.revoked_at.is_(None))
                            .values(revoked_at=self._kernel.now()))
            return row.user_id

    def revoke_user(self, session: Session, user_id: str) -> None:
        """End every session of a user (password change, erasure)."""
        session.execute(update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
                        .values(revoked_at=self._kernel.now()))

    def verify_access(self, token: str) -> Principal:
        """The principal of a valid access token.

        :raises Unauthorized: bad signature, expired, or not a Vendo access token.
        """
        import jwt

        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "sid"], "verify_exp": False})
        except jwt.PyJWTError:
            raise Unauthorized("invalid access token", code="invalid_token") from None
        if claims["exp"] <= self._kernel.now().timestamp():  # the kernel's clock, not the machine's
            raise Unauthorized("access token expired: refresh it", code="token_expired")
        return Principal(subject=claims["sub"], scopes=frozenset({"*"}), method=f"session:{claims.get('amr', '')}",
                         credential=claims["sid"])

    def user_exists(self, session: Session, user_id: str) -> bool:
        """Whether the user still exists (erased users' tokens stop working)."""
        return session.scalar(select(User.id).where(User.id == user_id)) is not None


class SessionAuthenticator:
    """The built-in authenticator of ``Authorization: Bearer <access token>``."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def authenticate(self, request: Any) -> Principal | None:
        """A principal for a Vendo access token; ``None`` for other credentials."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2 or not token.startswith("eyJ"):
            return None
        return self._sessions.verify_access(token)
