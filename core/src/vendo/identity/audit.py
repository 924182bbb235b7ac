"""The audit log: append-only, filterable by workspace admins, exportable as JSON lines.

Entries are written in the caller's transaction (an action and its record commit together)
or, for failures that roll back (a refused sign-in), in a transaction of their own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import String, cast, or_, select, update
from sqlalchemy.orm import Session

from vendo.identity.models import AuditEntry

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

ERASED = "erased user"


def _request_context(request: Any) -> tuple[str, str]:
    if request is None:
        return "", ""
    client = getattr(request, "client", None)
    ip = client.host if client is not None else ""
    request_id = getattr(getattr(request, "state", None), "request_id", "") or ""
    return ip, request_id


class Audit:
    """Records and reads audit entries."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def record(
        self,
        session: Session,
        action: str,
        *,
        actor: str | None = None,
        actor_label: str = "",
        workspace: str | None = None,
        target_type: str = "",
        target_id: str = "",
        outcome: str = "success",
        details: dict[str, Any] | None = None,
        request: Any = None,
    ) -> None:
        """Append an entry in ``session``'s transaction. Never put secrets in ``details``."""
        ip, request_id = _request_context(request)
        session.add(AuditEntry(
            at=self._kernel.now(), action=action, outcome=outcome, workspace_id=workspace, actor_id=actor,
            actor_label=actor_label, target_type=target_type, target_id=target_id, ip=ip,
            request_id=request_id, details=dict(details or {}),
        ))

    def record_now(self, action: str, **fields: Any) -> None:
        """Append an entry in a transaction of its own (for attempts that failed)."""
        with self._kernel.session() as session:
            self.record(session, action, **fields)

    def query(
        self,
        workspace: str,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """A workspace's entries, newest first; ``before`` pages by entry id."""
        query = select(AuditEntry).where(AuditEntry.workspace_id == workspace)
        if action:
            query = query.where(or_(AuditEntry.action == action, AuditEntry.action.startswith(action + ".")))
        if actor:
            query = query.where(AuditEntry.actor_id == actor)
        if since:
            query = query.where(AuditEntry.at >= since)
        if until:
            query = query.where(AuditEntry.at < until)
        if before:
            query = query.where(AuditEntry.id < before)
        query = query.order_by(AuditEntry.id.desc()).limit(limit)
        with self._kernel.session() as session:
            return [self.as_dict(entry) for entry in session.scalars(query)]

    def export_lines(self, workspace: str, **filters: Any) -> Iterator[str]:
        """Every matching entry as one JSON line, oldest first."""
        entries: list[dict[str, Any]] = []
        before = None
        while True:
            page = self.query(workspace, limit=1000, before=before, **filters)
            entries.extend(page)
            if len(page) < 1000:
                break
            before = page[-1]["id"]
        for entry in reversed(entries):
            yield json.dumps(entry, sort_keys=True) + "\n"

    @staticmethod
    def as_dict(entry: AuditEntry) -> dict[str, Any]:
        """An entry as JSON-compatible data."""
        return {
            "id": entry.id, "at": entry.at.isoformat(), "action": entry.action, "outcome": entry.outcome,
            "workspace_id": entry.workspace_id, "actor_id": entry.actor_id, "actor_label": entry.actor_label,
            "target_type": entry.target_type, "target_id": entry.target_id, "ip": entry.ip,
            "request_id": entry.request_id, "details": entry.details,
        }

    def anonymise(self, session: Session, user_id: str, email: str) -> None:
        """Keep the entries about an erased user but remove who they were (GDPR art. 17)."""
        session.execute(update(AuditEntry).where(AuditEntry.actor_id == user_id)
                        .values(actor_id=None, actor_label=ERASED))
        session.execute(update(AuditEntry).where(AuditEntry.target_id == user_id).values(target_id=ERASED))
        for spelling in {email, email.lower()}:
            session.execute(update(AuditEntry).where(AuditEntry.actor_label == spelling).values(actor_label=ERASED))
            mentioning = select(AuditEntry).where(cast(AuditEntry.details, String).contains(spelling))
            for entry in session.scalars(mentioning):
                entry.details = json.loads(json.dumps(entry.details).replace(spelling, ERASED))
