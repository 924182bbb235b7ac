"""Helpers shared by the kernel's tests (imported as `from kernel_support import ...`)."""

from __future__ import annotations

from typing import Any


def provider_for(family: str, name: str = "test", **attributes: Any) -> Any:
    """A minimal object satisfying ``family``'s protocol, for registry tests: every protocol
    member is present; methods return ``name`` so a test can tell providers apart."""
    import types

    from vendo.capabilities import FAMILIES

    protocol = FAMILIES[family].protocol
    members: dict[str, Any] = {"name": name, "description": "", "parameters": {}}
    import typing

    names = getattr(protocol, "__protocol_attrs__", None) or typing._get_protocol_attrs(protocol)  # 3.11
    for member in names:
        members.setdefault(member, lambda *args, _name=name, **kwargs: _name)
    members.update(attributes)
    return types.SimpleNamespace(**members)
