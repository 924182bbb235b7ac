"""API keys: creation, listing, rotation, revocation, verification and GDPR, in one place.

Management methods take the caller's SQLAlchemy session and principal, so a change, its
audit entry and its outbox event commit together or not at all. A workspace the caller
cannot see is reported as not found (404), and a key of another workspace too, so neither
workspace ids nor key ids can be probed.

Verification (:meth:`ApiKeys.verify`) is the hot path: one primary-key read joined to the
creator's membership, one keyed hash (HMAC-SHA256) and a constant-time comparison; it
writes ``last_used_at`` at most once per key per ``last_used_resolution_seconds``.
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from vendo import Conflict, Forbidden, InvalidInput, Membership, NotFound, Principal, Unauthorized
from vendo_auth_apikeys.keys import (
    ENVIRONMENTS,
    HASH_PURPOSE,
    display_prefix,
    format_key,
    is_key_id,
    new_key_id,
    new_secret,
    parse_key,
)
from vendo_auth_apikeys.models import ApiKey
from vendo_auth_apikeys.settings import MANAGE_SCOPE, SCOPE_PATTERN, WILDCARD, ApiKeySettings

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel

log = logging.getLogger("vendo.auth_apikeys")

#: The one answer to every refused key: malformed, unknown, revoked, expired or retired.
INVALID_MESSAGE = "invalid API key"
INVALID_CODE = "invalid_api_key"
#: The permission of the kernel's role matrix that managing keys needs (ADMIN and up).
PERMISSION = "api_keys.manage"
_DUMMY_HASH = "0" * 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The authentication query: the key by primary key, only while its creator is still a
# member of its workspace (a departed member's keys stop working without a write).
_LOOKUP = (
    select(ApiKey.secret_hash, ApiKey.environment, ApiKey.workspace_id, ApiKey.created_by, ApiKey.scopes,
           ApiKey.rate_limit_tier, ApiKey.expires_at, ApiKey.revoked_at, ApiKey.grace_until, ApiKey.last_used_at)
    .join(Membership, and_(Membership.workspace_id == ApiKey.workspace_id, Membership.user_id == ApiKey.created_by))
    .where(ApiKey.id == bindparam("key_id"))
)


def _bare_id(value: str) -> str | None:
    """The key id in what an operator pastes: the id, the listed prefix (``vk_live_<id>…``) or
    the whole (leaked) key; ``None`` when it is none of those."""
    value = value.strip().rstrip("\u2026")
    parsed = parse_key(value)
    if parsed is not None:
        return parsed.key_id
    for environment in ENVIRONMENTS:
        value = value.removeprefix(f"vk_{environment}_")
    return value if is_key_id(value) else None


def invalid_key() -> Unauthorized:
    """The single error of every refused key (same status, code and message)."""
    return Unauthorized(INVALID_MESSAGE, code=INVALID_CODE)


def holds(scopes: Iterable[str], scope: str) -> bool:
    """Whether a credential's scopes include ``scope`` (``*`` includes everything)."""
    scopes = set(scopes)
    return WILDCARD in scopes or scope in scopes


class ApiKeys:
    """The API-key service of one kernel. Stateless: every fact lives in the database."""

    def __init__(self, kernel: Kernel, settings: ApiKeySettings | None = None) -> None:
        self._kernel = kernel
        self.settings = settings if settings is not None else ApiKeySettings()
        self._resolution = timedelta(seconds=self.settings.last_used_resolution_seconds)
        self._reader: tuple[Engine, Engine] | None = None  # (kernel engine, engine the lookup uses)

    # -- management -------------------------------------------------------------------------

    def authorize(self, session: Session, principal: Principal, workspace_id: str) -> None:
        """Check that ``principal`` may manage the keys of ``workspace_id``.

        :raises NotFound: another workspace's credential, or not a member (``workspace_not_found``).
        :raises Forbidden: a role below ADMIN (``insufficient_role``), or an API key without the
            ``api_keys:manage`` scope (``missing_scope``).
        """
        if principal.workspace is not None and principal.workspace != workspace_id:
            raise NotFound("workspace not found", code="workspace_not_found")  # a key never leaves its workspace
        self._kernel.identity.authorize(session, principal.subject, workspace_id, PERMISSION)
        if not holds(principal.scopes, MANAGE_SCOPE):
            raise Forbidden(f"this credential lacks the scope {MANAGE_SCOPE}", code="missing_scope",
                            details={"missing": [MANAGE_SCOPE]})

    def create(self, session: Session, principal: Principal, workspace_id: str, *, name: str,
               scopes: list[str], expires_at: datetime | None = None, environment: str | None = None,
               rate_limit_tier: str | None = None, request: Any = None) -> tuple[ApiKey, str]:
        """Create a key; return its row and the full key (shown once, never stored).

        :raises InvalidInput: bad name, scopes, expiry, environment or tier.
        :raises Forbidden: scopes the calling credential does not hold itself.
        :raises Conflict: ``too_many_api_keys``.
        """
        self.authorize(session, principal, workspace_id)
        now = self._kernel.now()
        values = {
            "name": self._name(name),
            "scopes": self._scopes(scopes, principal),
            "expires_at": self._expiry(expires_at, now),
            "environment": self._environment(environment),
            "rate_limit_tier": self._tier(rate_limit_tier),
        }
        usable = session.scalar(select(func.count()).select_from(ApiKey).where(
            ApiKey.workspace_id == workspace_id, *self._usable_clauses(now)))
        limit = self.settings.max_keys_per_workspace
        if (usable or 0) >= limit:
            raise Conflict(f"this workspace already has {limit} usable API keys, the most allowed: revoke one first",
                           code="too_many_api_keys", details={"limit": limit})
        row, key = self.issue(session, workspace_id=workspace_id, created_by=principal.subject, **values)
        self._kernel.audit.record(
            session, "api_key.created", actor=principal.subject, workspace=workspace_id, target_type="api_key",
            target_id=row.id, request=request, details={**self._public(row), **self._via(principal)})
        self._kernel.outbox.publish(session, "api_key.created", {"workspace_id": workspace_id, **self._public(row),
                                                                 "created_by": row.created_by})
        log.info("API key %s created in workspace %s", row.id, workspace_id)
        return row, key

    def issue(self, session: Session, *, workspace_id: str, created_by: str, name: str, scopes: list[str],
              environment: str, rate_limit_tier: str, expires_at: datetime | None = None,
              rotated_from: str | None = None) -> tuple[ApiKey, str]:
        """Write a key row from already validated values (no permission check, no audit).

        Used by :meth:`create` and :meth:`rotate`, and by tests and benchmarks that need a
        key without going through HTTP. Return the row and the full key.
        """
        key_id = new_key_id()
        while session.get(ApiKey, key_id) is not None:  # 36**12 ids: practically never loops
            key_id = new_key_id()
        secret = new_secret()
        row = ApiKey(
            id=key_id, workspace_id=workspace_id, created_by=created_by, name=name, environment=environment,
            secret_hash=self._kernel.secrets.keyed_hash(HASH_PURPOSE, secret), scopes=list(scopes),
            rate_limit_tier=rate_limit_tier, created_at=self._kernel.now(), expires_at=expires_at,
            rotated_from=rotated_from,
        )
        session.add(row)
        session.flush()
        return row, format_key(environment, key_id, secret)

    def list(self, session: Session, principal: Principal, workspace_id: str, *,
             include_revoked: bool = True) -> list[dict[str, Any]]:
        """The workspace's keys, newest first, without secrets."""
        self.authorize(session, principal, workspace_id)
        query = (
            select(ApiKey, Membership.id)
            .outerjoin(Membership, and_(Membership.workspace_id == ApiKey.workspace_id,
                                        Membership.user_id == ApiKey.created_by))
            .where(ApiKey.workspace_id == workspace_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        )
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        now = self._kernel.now()
        return [row.as_dict(now, membership is not None) for row, membership in session.execute(query)]

    def get(self, session: Session, principal: Principal, workspace_id: str, key_id: str) -> dict[str, Any]:
        """One key of the workspace, without its secret.

        :raises NotFound: ``api_key_not_found`` (also for another workspace's key).
        """
        self.authorize(session, principal, workspace_id)
        row = self._find(session, workspace_id, key_id)
        is_member = self._kernel.identity.role_of(session, row.created_by, workspace_id) is not None
        return row.as_dict(self._kernel.now(), is_member)

    def rotate(self, session: Session, principal: Principal, workspace_id: str, key_id: str, *,
               grace_seconds: int | None = None, request: Any = None) -> tuple[ApiKey, str, ApiKey]:
        """Replace a key by a new one with the same name, scopes, environment, tier and expiry.

        The old key keeps working until ``grace_seconds`` from now (never past its own
        expiry), then fails. The new key belongs to the caller, whose role applies to it: a
        rotation never hands anyone another member's powers. Return the new row, the new
        full key (shown once) and the old row.

        :raises NotFound: ``api_key_not_found``.
        :raises Conflict: ``api_key_revoked``, ``api_key_expired`` or ``api_key_already_rotated``.
        :raises InvalidInput: ``invalid_grace_seconds``, or values no longer allowed by the settings.
        """
        self.authorize(session, principal, workspace_id)
        old = self._find(session, workspace_id, key_id)
        now = self._kernel.now()
        status = old.status(now)
        if status == "revoked":
            raise Conflict("this API key is revoked and cannot be rotated", code="api_key_revoked")
        if status == "expired":
            raise Conflict("this API key has expired: create a new one", code="api_key_expired")
        if old.rotated_at is not None:
            raise Conflict(f"this API key was already rotated: rotate its replacement {old.replaced_by}",
                           code="api_key_already_rotated", details={"replaced_by": old.replaced_by})
        grace = self.settings.default_grace_seconds if grace_seconds is None else grace_seconds
        if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= self.settings.max_grace_seconds:
            raise InvalidInput(f"grace_seconds must be 0 to {self.settings.max_grace_seconds}",
                               code="invalid_grace_seconds", details={"max": self.settings.max_grace_seconds})
        grace_until = now + timedelta(seconds=grace)
        if old.expires_at is not None:
            grace_until = min(grace_until, old.expires_at)
        values = {
            "name": old.name,
            "scopes": self._scopes(old.scopes, principal),
            "expires_at": old.expires_at,
            "environment": self._environment(old.environment),
            "rate_limit_tier": self._tier(old.rate_limit_tier, operator=True),  # the operator's choice stays
        }
        new, key = self.issue(session, workspace_id=workspace_id, created_by=principal.subject,
                              rotated_from=old.id, **values)
        claimed = session.execute(
            update(ApiKey).where(ApiKey.id == old.id, ApiKey.rotated_at.is_(None), ApiKey.revoked_at.is_(None))
            .values(rotated_at=now, grace_until=grace_until, replaced_by=new.id)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:  # a concurrent rotation or revocation won: this transaction rolls back
            raise Conflict("this API key was rotated or revoked meanwhile", code="api_key_already_rotated")
        session.refresh(old)
        details = {"prefix": old.as_dict(now)["prefix"], "name": old.name, "new_key_id": new.id,
                   "new_prefix": display_prefix(new.environment, new.id), "grace_seconds": grace,
                   "grace_until": grace_until.isoformat(), **self._via(principal)}
        self._kernel.audit.record(session, "api_key.rotated", actor=principal.subject, workspace=workspace_id,
                                  target_type="api_key", target_id=old.id, request=request, details=details)
        self._kernel.outbox.publish(session, "api_key.rotated", {
            "workspace_id": workspace_id, "key_id": old.id, "new_key_id": new.id,
            "grace_until": grace_until.isoformat(), "created_by": new.created_by})
        log.info("API key %s of workspace %s rotated into %s (old key valid until %s)", old.id, workspace_id,
                 new.id, grace_until.isoformat())
        return new, key, old

    def revoke(self, session: Session, principal: Principal, workspace_id: str, key_id: str, *,
               request: Any = None) -> ApiKey:
        """Revoke a key at once (idempotent: revoking a revoked key changes nothing).

        :raises NotFound: ``api_key_not_found``.
        """
        self.authorize(session, principal, workspace_id)
        row = self._find(session, workspace_id, key_id)
        if row.revoked_at is not None:
            return row
        now = self._kernel.now()
        revoked = session.execute(
            update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.refresh(row)
        if revoked != 1:  # revoked by a concurrent request, which recorded it
            return row
        self._kernel.audit.record(
            session, "api_key.revoked", actor=principal.subject, workspace=workspace_id, target_type="api_key",
            target_id=row.id, request=request,
            details={"prefix": display_prefix(row.environment, row.id), "name": row.name, **self._via(principal)})
        self._kernel.outbox.publish(session, "api_key.revoked",
                                    {"workspace_id": workspace_id, "key_id": row.id, "reason": "revoked"})
        log.info("API key %s of workspace %s revoked", row.id, workspace_id)
        return row

    # -- authentication ----------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The principal of a usable key.

        :raises Unauthorized: ``invalid_api_key`` for a malformed, unknown, revoked, expired or
            retired (rotated, grace over) key, a key of an environment this deployment does not
            accept, or a key whose creator left its workspace: one answer for all.
        """
        parsed = parse_key(token)
        if parsed is None or parsed.environment not in self.settings.accepted_environments:
            log.debug("API key refused: malformed or of a refused environment")
            raise invalid_key()
        with self._lookup_engine().connect() as connection:
            row = connection.execute(_LOOKUP, {"key_id": parsed.key_id}).first()
        given = self._kernel.secrets.keyed_hash(HASH_PURPOSE, parsed.secret)
        expected = row.secret_hash if row is not None else _DUMMY_HASH
        if not hmac.compare_digest(expected, given) or row is None or row.environment != parsed.environment:
            log.debug("API key %s refused: unknown id, wrong secret or inactive creator", parsed.key_id)
            raise invalid_key()
        now = self._kernel.now()
        if (row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now)
                or (row.grace_until is not None and row.grace_until <= now)):
            log.debug("API key %s refused: revoked, expired or rotated", parsed.key_id)
            raise invalid_key()
        if row.last_used_at is None or row.last_used_at <= now - self._resolution:
            self._touch(parsed.key_id, now)
        return Principal(
            subject=row.created_by, workspace=row.workspace_id, scopes=frozenset(row.scopes or ()), method="api_key",
            credential=parsed.key_id,
            attributes={"rate_limit_tier": row.rate_limit_tier,
                        "key_prefix": display_prefix(parsed.environment, parsed.key_id),
                        "environment": parsed.environment},
        )

    def _lookup_engine(self) -> Engine:
        """The engine of the authentication read: the kernel's (same pool), in autocommit mode
        except on SQLite. One SELECT needs no transaction, and on a server database leaving
        out BEGIN/ROLLBACK saves a round trip per request; on SQLite switching modes costs
        more than it saves, but the read is marked read-only so it begins DEFERRED instead of
        taking the write lock (it must not wait for, nor hold up, the writers of the process).
        Core rather than an ORM session: less than half the time on SQLite."""
        from vendo import READ_ONLY

        engine = self._kernel.engine
        if self._reader is None or self._reader[0] is not engine:  # the kernel may have re-created it
            reader = engine.execution_options(**{READ_ONLY: True}) if engine.dialect.name == "sqlite" else \
                engine.execution_options(isolation_level="AUTOCOMMIT")
            self._reader = (engine, reader)
        return self._reader[1]

    def _touch(self, key_id: str, now: datetime) -> None:
        """Record a use; conditional, so concurrent requests write it once. A failure here
        (e.g. a locked SQLite file) never fails the request that used the key."""
        try:
            with self._kernel.session() as session:
                session.execute(
                    update(ApiKey).where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None),
                                                                  ApiKey.last_used_at <= now - self._resolution))
                    .values(last_used_at=now).execution_options(synchronize_session=False))
        except SQLAlchemyError as exc:
            log.warning("could not record the use of API key %s: %s", key_id, type(exc).__name__)

    # -- privacy -----------------------------------------------------------------------------

    def export_user(self, session: Session, user_id: str) -> dict[str, Any] | None:
        """Metadata of the keys a user created (never secrets), or ``None`` when there are none."""
        rows = session.scalars(select(ApiKey).where(ApiKey.created_by == user_id)
                               .order_by(ApiKey.created_at, ApiKey.id)).all()
        if not rows:
            return None
        now = self._kernel.now()
        return {
            "api_keys": [{**row.as_dict(now), "workspace_id": row.workspace_id} for row in rows],
            "secrets": "each key's secret is stored only as a keyed hash (HMAC-SHA256) and cannot be exported",
        }

    def erase_user(self, session: Session, user_id: str) -> int:
        """Delete the keys a user created (they stop working at once); return how many.

        Each deletion is recorded in its workspace's audit log without naming the user.
        """
        rows = session.scalars(select(ApiKey).where(ApiKey.created_by == user_id)).all()
        for row in rows:
            self._kernel.audit.record(session, "api_key.deleted", workspace=row.workspace_id, target_type="api_key",
                                      target_id=row.id, details={"reason": "creator account erased",
                                                                 "prefix": display_prefix(row.environment, row.id)})
            self._kernel.outbox.publish(session, "api_key.revoked", {"workspace_id": row.workspace_id,
                                                                     "key_id": row.id, "reason": "erased"})
            session.delete(row)
        session.flush()
        return len(rows)

    def revoke_created_by(self, session: Session, user_id: str, reason: str) -> int:
        """Revoke at once every usable key a user created (its account was claimed by the
        address's verified owner, ``reason``); return how many. Audited in each workspace."""
        now = self._kernel.now()
        rows = session.scalars(select(ApiKey).where(ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None))).all()
        for row in rows:
            row.revoked_at = now
            self._kernel.audit.record(session, "api_key.revoked", workspace=row.workspace_id, target_type="api_key",
                                      target_id=row.id, details={"reason": reason, "name": row.name,
                                                                 "prefix": display_prefix(row.environment, row.id)})
            self._kernel.outbox.publish(session, "api_key.revoked", {"workspace_id": row.workspace_id,
                                                                     "key_id": row.id, "reason": reason})
        session.flush()
        return len(rows)

    # -- operator ----------------------------------------------------------------------------

    def operator_find(self, session: Session, key_id: str) -> ApiKey:
        """A key by id or display prefix, in any workspace (the operator's commands).

        :raises NotFound: ``api_key_not_found``.
        """
        bare = _bare_id(key_id)
        row = session.get(ApiKey, bare) if bare is not None else None
        if row is None:
            raise NotFound(f"no API key {key_id!r}", code="api_key_not_found")
        return row

    def operator_set_tier(self, session: Session, key_id: str, tier: str) -> ApiKey:
        """Give a key a rate-limit tier, operator tiers included; audited in its workspace."""
        row = self.operator_find(session, key_id)
        chosen = self._tier(tier, operator=True)
        if row.rate_limit_tier != chosen:
            previous, row.rate_limit_tier = row.rate_limit_tier, chosen
            self._kernel.audit.record(session, "api_key.tier_changed", actor_label="operator",
                                      workspace=row.workspace_id, target_type="api_key", target_id=row.id,
                                      details={"from": previous, "to": chosen,
                                               "prefix": display_prefix(row.environment, row.id)})
        return row

    def operator_revoke(self, session: Session, key_id: str) -> tuple[ApiKey, bool]:
        """Revoke a key at once, whatever its workspace (a leaked key); ``(row, revoked now)``."""
        row = self.operator_find(session, key_id)
        if row.revoked_at is not None:
            return row, False
        row.revoked_at = self._kernel.now()
        self._kernel.audit.record(session, "api_key.revoked", actor_label="operator", workspace=row.workspace_id,
                                  target_type="api_key", target_id=row.id,
                                  details={"reason": "operator", "name": row.name,
                                           "prefix": display_prefix(row.environment, row.id)})
        self._kernel.outbox.publish(session, "api_key.revoked", {"workspace_id": row.workspace_id,
                                                                 "key_id": row.id, "reason": "operator"})
        return row, True

    def erase_workspace(self, session: Session, workspace_id: str) -> int:
        """Delete every key of a workspace being deleted; return how many."""
        rows = session.scalars(select(ApiKey).where(ApiKey.workspace_id == workspace_id)).all()
        for row in rows:
            session.delete(row)
        session.flush()
        return len(rows)

    # -- helpers -----------------------------------------------------------------------------

    def _find(self, session: Session, workspace_id: str, key_id: str) -> ApiKey:
        row = None
        if is_key_id(key_id):
            row = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id))
        if row is None:
            raise NotFound("API key not found", code="api_key_not_found")
        return row

    @staticmethod
    def _usable_clauses(now: datetime) -> list[Any]:
        return [ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
                or_(ApiKey.grace_until.is_(None), ApiKey.grace_until > now)]

    @staticmethod
    def _public(row: ApiKey) -> dict[str, Any]:
        """What audit entries and events say about a key: metadata only."""
        return {"key_id": row.id, "name": row.name, "prefix": display_prefix(row.environment, row.id),
                "environment": row.environment, "scopes": list(row.scopes), "rate_limit_tier": row.rate_limit_tier,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None}

    @staticmethod
    def _via(principal: Principal) -> dict[str, Any]:
        """How the manager authenticated (an API key is named by its id)."""
        via: dict[str, Any] = {"via": principal.method}
        if principal.method == "api_key":
            via["via_key_id"] = principal.credential
        return via

    @staticmethod
    def _name(name: str) -> str:
        cleaned = (name or "").strip()
        if not 1 <= len(cleaned) <= 100 or _CONTROL.search(cleaned):
            raise InvalidInput("name must be 1 to 100 printable characters", code="invalid_name")
        return cleaned

    def _scopes(self, scopes: Iterable[str], principal: Principal) -> list[str]:
        if isinstance(scopes, str):
            raise InvalidInput("scopes must be a list of strings", code="invalid_scopes")
        cleaned = list(dict.fromkeys(s.strip() if isinstance(s, str) else s for s in scopes))
        bad = [s for s in cleaned if not isinstance(s, str) or (s != WILDCARD and not SCOPE_PATTERN.fullmatch(s))]
        if bad:
            raise InvalidInput(f"invalid scope name(s) {bad!r}: use letters, digits and _ . : - / (1 to 100)",
                               code="invalid_scopes", details={"invalid": [str(s) for s in bad]})
        if len(cleaned) > self.settings.max_scopes:
            raise InvalidInput(f"a key holds at most {self.settings.max_scopes} scopes", code="invalid_scopes")
        if WILDCARD in cleaned and not self.settings.allow_wildcard_scope:
            raise InvalidInput("the '*' scope cannot be granted to API keys: list the scopes the key needs",
                               code="scope_not_grantable", details={"scopes": [WILDCARD]})
        allowed = self.settings.grantable_scopes
        if allowed is not None:
            refused = [s for s in cleaned if s not in allowed]
            if refused:
                raise InvalidInput(f"scope(s) {', '.join(refused)} cannot be granted to API keys here",
                                   code="scope_not_grantable", details={"scopes": refused, "grantable": allowed})
        if WILDCARD not in principal.scopes:
            missing = [s for s in cleaned if s not in principal.scopes]
            if missing:
                raise Forbidden(f"this credential cannot grant scope(s) it does not hold: {', '.join(missing)}",
                                code="scope_not_held", details={"scopes": missing})
        return cleaned

    def _expiry(self, expires_at: datetime | None, now: datetime) -> datetime | None:
        if expires_at is None:
            return None
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise InvalidInput("expires_at needs a time zone, e.g. 2026-06-30T00:00:00Z", code="invalid_expiry")
        if expires_at <= now:
            raise InvalidInput("expires_at must be in the future", code="invalid_expiry")
        return expires_at

    def _environment(self, environment: str | None) -> str:
        chosen = environment or self.settings.environment
        if chosen not in ENVIRONMENTS:
            raise InvalidInput(f"unknown environment {chosen!r}: use live or test", code="invalid_environment")
        if chosen not in self.settings.accepted_environments:
            raise InvalidInput(f"this deployment does not accept {chosen} keys (accepted: "
                               f"{', '.join(self.settings.accepted_environments)})", code="environment_not_accepted")
        return chosen

    def _tier(self, tier: str | None, *, operator: bool = False) -> str:
        """A tier a key may carry: one of ``rate_limit_tiers``, or for the operator also one of
        ``operator_rate_limit_tiers``.

        :raises Forbidden: ``operator_rate_limit_tier`` (a workspace admin asked for an operator tier).
        :raises InvalidInput: ``invalid_rate_limit_tier``.
        """
        chosen = tier if tier is not None else self.settings.default_rate_limit_tier
        if chosen in self.settings.operator_rate_limit_tiers:
            if operator:
                return chosen
            raise Forbidden(f"rate_limit_tier {chosen!r} is assigned by the operator only (vendo api-keys set-tier)",
                            code="operator_rate_limit_tier")
        if chosen not in self.settings.rate_limit_tiers:
            raise InvalidInput(f"unknown rate_limit_tier {chosen!r}: use one of "
                               f"{', '.join(self.settings.rate_limit_tiers)}", code="invalid_rate_limit_tier",
                               details={"tiers": self.settings.rate_limit_tiers})
        return chosen
