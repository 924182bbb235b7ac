"""Workspace roles and the permission matrix (seed 003, §C.1).

- OWNER: everything; alone manages billing, deletes the workspace and transfers ownership.
  Exactly one per workspace.
- ADMIN: manages members (invite, remove, change roles below OWNER) and settings.
- MEMBER: creates and uses features, AI and metered ones included.
- VIEWER: reads only; cannot use AI or metered features.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    """A member's role in a workspace, from most to least powerful."""

    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"
    VIEWER = "VIEWER"

    @property
    def rank(self) -> int:
        """3 for OWNER down to 0 for VIEWER."""
        return {"OWNER": 3, "ADMIN": 2, "MEMBER": 1, "VIEWER": 0}[self.value]

    def at_least(self, other: Role | str) -> bool:
        """True when this role has all the powers of ``other``."""
        return self.rank >= Role(other).rank


#: The least role holding each permission.
PERMISSIONS: dict[str, Role] = {
    "workspace.read": Role.VIEWER,
    "workspace.update": Role.ADMIN,
    "workspace.delete": Role.OWNER,
    "workspace.transfer": Role.OWNER,
    "billing.manage": Role.OWNER,
    "billing.read": Role.ADMIN,
    "members.read": Role.ADMIN,
    "members.invite": Role.ADMIN,
    "members.remove": Role.ADMIN,
    "members.change_role": Role.ADMIN,
    "api_keys.manage": Role.ADMIN,
    "audit.read": Role.ADMIN,
    "content.read": Role.VIEWER,
    "content.write": Role.MEMBER,
    "features.use": Role.MEMBER,
}


def allows(role: Role | str, permission: str) -> bool:
    """Whether ``role`` holds ``permission``.

    :raises KeyError: unknown permission (a typo must not silently deny or allow).
    """
    return Role(role).at_least(PERMISSIONS[permission])
