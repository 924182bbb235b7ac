"""Feature flags with a percentage rollout per plan (``kernel.flags``).

Declared in the catalog::

    [flags.semantic-search-v2]
    description = "The new semantic search ranking"
    default = false                                    # plans the rollout does not name
    rollout = { basic = 0, pro = 25, business = 100 }  # percent of each plan's subjects

A subject's plan is the one the entitlement service gives it
(``kernel.entitlements.entitlements(subject)["plan"]``: trials, grace periods and lapsed
subscriptions included); the flag definitions come from the current catalog. Each subject
falls in a bucket from 0 to 99, a stable hash of (flag name, subject): the same answer in
every process and on every machine, independent of the order subjects arrive in, and
monotone: raising a rollout from 25 to 50 keeps every subject that had the flag.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from vendo.entitlements.catalog import FlagDefinition, current_catalog
from vendo.errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel


def rollout_bucket(name: str, subject: str) -> int:
    """The bucket (0 to 99) of ``subject`` for flag ``name``: the first 8 bytes of
    SHA-256(``name`` NUL ``subject``) modulo 100. A subject is in a rollout of ``p`` percent
    when its bucket is below ``p``."""
    digest = hashlib.sha256(f"{name}\x00{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class FlagState:
    """A flag's answer for one subject, and why: ``reason`` is ``"rollout"`` (the plan is in
    the rollout, at ``percent``) or ``"default"`` (it is not)."""

    name: str
    enabled: bool
    description: str
    plan: str
    reason: str
    percent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return asdict(self)


def _evaluate(name: str, definition: FlagDefinition, subject: str, plan: str) -> FlagState:
    percent = definition.rollout.get(plan)
    if percent is None:
        return FlagState(name, definition.default, definition.description, plan, "default")
    return FlagState(name, rollout_bucket(name, subject) < percent, definition.description, plan, "rollout", percent)


class Flags:
    """Answers "is this flag on for this subject?" (see the module docstring)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def _plan(self, subject: str) -> str:
        if not isinstance(subject, str) or not subject:
            raise InvalidInput("subject is required", code="invalid_subject")
        return self._kernel.entitlements.entitlements(subject)["plan"]

    def evaluate(self, subject: str, name: str) -> FlagState:
        """The flag ``name`` for ``subject``, with the reason.

        :raises NotFound: ``unknown_flag`` or ``no_catalog``.
        :raises InvalidInput: ``invalid_subject``.
        """
        definition = current_catalog(self._kernel).flag(name)
        return _evaluate(name, definition, subject, self._plan(subject))

    def enabled(self, subject: str, name: str) -> bool:
        """Whether flag ``name`` is on for ``subject``.

        :raises NotFound: ``unknown_flag`` or ``no_catalog``.
        """
        return self.evaluate(subject, name).enabled

    def for_subject(self, subject: str) -> dict[str, Any]:
        """Every flag of the current catalog for ``subject``: ``{"subject", "plan", "flags":
        [FlagState as a dict, by name]}``."""
        flags = current_catalog(self._kernel).flags
        plan = self._plan(subject)
        return {"subject": subject, "plan": plan,
                "flags": [_evaluate(name, flags[name], subject, plan).to_dict() for name in sorted(flags)]}
