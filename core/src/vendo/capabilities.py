"""Capability families and the protocols their providers implement.

A family is a named registry filled by a ``vendo_register_*`` hook. Some families need
exactly one active provider (billing, license, vector_store); the others may have several.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Protocol, runtime_checkable


@dataclass(frozen=True)
class Family:
    """A capability family: its name, the hook that fills it and how many may be active."""

    name: str
    hook: str
    single: bool
    protocol: type | None = None
    description: str = ""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the result of authentication.

    :param subject: the authenticated user's id (or a service identity).
    :param workspace: the workspace the request acts on, if any.
    :param scopes: the permissions granted to this credential.
    :param method: how the caller authenticated (``"password"``, ``"api_key"``, ``"oidc"``...).
    """

    subject: str
    workspace: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    method: str = ""


@runtime_checkable
class Authenticator(Protocol):
    """Turns an incoming request into a :class:`Principal`, or ``None`` if its credentials
    are not of this authenticator's kind (the next one in the chain is then tried)."""

    def authenticate(self, request: Any) -> Principal | None | Awaitable[Principal | None]:
        """Return a principal, ``None`` to pass, or raise ``VendoError`` (401) for bad credentials."""


@runtime_checkable
class Tool(Protocol):
    """A callable capability with a JSON-schema interface (the function-calling shape)."""

    name: str
    description: str
    parameters: dict[str, Any]

    def run(self, arguments: dict[str, Any]) -> Any:
        """Run the tool with arguments valid against ``parameters``; may return an awaitable."""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("auth", "vendo_register_authenticators", single=False, protocol=Authenticator,
               description="request authenticators, tried as a chain"),
        Family("billing", "vendo_register_billing_providers", single=True,
               description="payments, checkout and subscriptions"),
        Family("license", "vendo_register_license_backends", single=True,
               description="license keys: issue, verify, activate"),
        Family("ai", "vendo_register_ai_providers", single=False,
               description="chat, embeddings and model catalogs"),
        Family("knowledge", "vendo_register_knowledge_connectors", single=False,
               description="document sources for knowledge bases"),
        Family("vector_store", "vendo_register_vector_stores", single=True,
               description="similarity search over embeddings"),
        Family("tool", "vendo_register_tools", single=False, protocol=Tool,
               description="tools callable by agents and integrators"),
    )
}
