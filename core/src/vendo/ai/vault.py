"""The BYOK vault: workspaces' own AI vendor keys, encrypted at rest, write-only.

A key is encrypted with PyNaCl's SecretBox under a key derived from the master secret for
the purpose ``ai-vault:<workspace>``, so a ciphertext copied into another workspace's row
cannot be decrypted there. Nothing ever returns a stored key except :meth:`Vault.key_for` and :meth:`Vault.open`,
which the AI service calls to hand it to the provider for one request.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vendo.ai.models import AICredential
from vendo.errors import InvalidInput, NotFound

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def _changed(session: Session) -> None:
    """The AI services' cached workspace rows are dropped (now, and once ``session`` commits)."""
    from vendo.ai.service import workspace_changed

    workspace_changed(session)


def _purpose(workspace: str) -> str:
    return f"ai-vault:{workspace}"


def fingerprint(key: str) -> str:
    """What identifies a key without revealing it: its last 4 characters and a short SHA-256."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"\u2026{key[-4:]} sha256:{digest}" if len(key) >= 12 else f"sha256:{digest}"


def describe(row: AICredential) -> dict[str, Any]:
    """The public view of a credential: never the key."""
    return {"id": row.id, "provider": row.provider, "fingerprint": row.fingerprint, "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None}


class Vault:
    """Stores, rotates, deletes and (for the AI service only) opens workspaces' vendor keys."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def put(self, session: Session, workspace: str, provider: str, key: str, *, actor: str,
            request: Any = None) -> tuple[dict[str, Any], bool]:
        """Store ``key`` for ``provider``, replacing (rotating) the one stored; return the public
        view and whether it was created. Audited as ``ai.credential.created|rotated``.

        :raises InvalidInput: ``invalid_provider`` or ``invalid_key``.
        """
        provider = (provider or "").strip().lower()
        if not _PROVIDER.match(provider):
            raise InvalidInput("provider is a vendor name such as openai, anthropic or ollama",
                               code="invalid_provider")
        if not isinstance(key, str) or not 8 <= len(key.strip()) <= 4096 or any(c.isspace() for c in key.strip()):
            raise InvalidInput("key must be 8 to 4096 characters without spaces", code="invalid_key")
        key = key.strip()
        _changed(session)
        now = self._kernel.now()
        ciphertext = self._kernel.secrets.encrypt(_purpose(workspace), key)
        row = session.scalar(select(AICredential).where(AICredential.workspace == workspace,
                                                        AICredential.provider == provider))
        created = row is None
        if row is None:
            row = AICredential(id=f"aicred_{uuid.uuid4().hex[:20]}", workspace=workspace, provider=provider,
                               created_by=actor, created_at=now, rotated_at=None)
        else:
            row.rotated_at = now
        row.ciphertext, row.fingerprint = ciphertext, fingerprint(key)
        session.add(row)
        session.flush()
        self._kernel.audit.record(session, "ai.credential.created" if created else "ai.credential.rotated",
                                  actor=actor, workspace=workspace, target_type="ai_credential", target_id=row.id,
                                  details={"provider": provider, "fingerprint": row.fingerprint}, request=request)
        return describe(row), created

    def list(self, session: Session, workspace: str) -> list[dict[str, Any]]:
        """The workspace's credentials (provider, fingerprint, dates), by provider."""
        rows = session.scalars(select(AICredential).where(AICredential.workspace == workspace)
                               .order_by(AICredential.provider))
        return [describe(row) for row in rows]

    def delete(self, session: Session, workspace: str, provider: str, *, actor: str, request: Any = None) -> None:
        """Delete the workspace's key for ``provider``; audited as ``ai.credential.deleted``.

        :raises NotFound: ``credential_not_found``.
        """
        row = session.scalar(select(AICredential).where(AICredential.workspace == workspace,
                                                        AICredential.provider == provider))
        if row is None:
            raise NotFound(f"no {provider} key is stored for this workspace", code="credential_not_found")
        _changed(session)
        session.execute(delete(AICredential).where(AICredential.id == row.id))
        self._kernel.audit.record(session, "ai.credential.deleted", actor=actor, workspace=workspace,
                                  target_type="ai_credential", target_id=row.id,
                                  details={"provider": provider, "fingerprint": row.fingerprint}, request=request)

    def key_for(self, session: Session, workspace: str | None, provider: str) -> str | None:
        """The clear key of ``workspace`` for ``provider``, or ``None`` (no workspace, no key)."""
        if not workspace:
            return None
        row = session.scalar(select(AICredential.ciphertext).where(AICredential.workspace == workspace,
                                                                   AICredential.provider == provider))
        return None if row is None else self.open(workspace, row)

    def open(self, workspace: str, ciphertext: str) -> str:
        """The clear key of a ``ciphertext`` read from ``workspace``'s row (the AI service reads
        the row together with the rest of an admission, in one statement); a ciphertext of
        another workspace does not decrypt."""
        return self._kernel.secrets.decrypt(_purpose(workspace), ciphertext)

    def erase_workspace(self, session: Session, workspace: str) -> int:
        """Delete every key of a workspace being deleted; return how many."""
        _changed(session)
        result = session.execute(delete(AICredential).where(AICredential.workspace == workspace))
        return int(result.rowcount or 0)
