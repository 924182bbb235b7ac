"""Vendo: sell what you build. The kernel's public surface.

Plugins import only what this module exports::

    from vendo import hookimpl

    @hookimpl
    def vendo_register_tools(register):
        register("echo", EchoTool())

Importing ``vendo`` loads nothing heavy and no plugin: the HTTP app, the storage layer
and plugins load when a kernel is created and started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vendo._version import API_VERSION, __version__
from vendo.capabilities import (
    BILLING_EVENT_TYPES,
    FAMILIES,
    LICENSE_CODES,
    AIProvider,
    Authenticator,
    BillingEvent,
    BillingProvider,
    Bucket,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CheckoutRequest,
    CheckoutSession,
    CounterStore,
    Document,
    Embeddings,
    KnowledgeConnector,
    License,
    LicenseBackend,
    LicenseRequest,
    ModelInfo,
    Principal,
    Tool,
    Usage,
    VectorMatch,
    VectorStore,
    Verification,
    counter_key,
    counter_period,
    on_rollback,
)
from vendo.errors import (
    ConfigError,
    Conflict,
    CounterStoreUnavailable,
    DatabaseError,
    DuplicateProviderError,
    Forbidden,
    InvalidInput,
    InvalidSignature,
    NotFound,
    PluginError,
    ProviderNotConfigured,
    StartupError,
    Unauthorized,
    VendoError,
)
from vendo.events import Event
from vendo.plugins import ENTRY_POINT_GROUP, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from vendo.app import create_app
    from vendo.cli import cli_kernel
    from vendo.config import PluginSettings, Settings, load_settings
    from vendo.db import Model, utcnow
    from vendo.entitlements.endpoints import rate_limit_headers, rate_limited, require_feature
    from vendo.entitlements.ratelimit import RateLimited, RateLimitResult
    from vendo.identity.auth import (
        WorkspaceAccess,
        current_principal,
        optional_principal,
        require_permission,
        require_role,
        require_scope,
    )
    from vendo.identity.roles import Role
    from vendo.kernel import Kernel

_LAZY = {
    "require_feature": "vendo.entitlements.endpoints",
    "rate_limited": "vendo.entitlements.endpoints",
    "rate_limit_headers": "vendo.entitlements.endpoints",
    "RateLimited": "vendo.entitlements.ratelimit",
    "RateLimitResult": "vendo.entitlements.ratelimit",
    "current_principal": "vendo.identity.auth",
    "optional_principal": "vendo.identity.auth",
    "require_role": "vendo.identity.auth",
    "require_permission": "vendo.identity.auth",
    "require_scope": "vendo.identity.auth",
    "WorkspaceAccess": "vendo.identity.auth",
    "Role": "vendo.identity.roles",
    "Kernel": "vendo.kernel",
    "create_app": "vendo.app",
    "cli_kernel": "vendo.cli",
    "Settings": "vendo.config",
    "PluginSettings": "vendo.config",
    "load_settings": "vendo.config",
    "Model": "vendo.db",
    "utcnow": "vendo.db",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vendo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AIProvider",
    "API_VERSION",
    "BILLING_EVENT_TYPES",
    "BillingEvent",
    "BillingProvider",
    "Bucket",
    "CounterStore",
    "CounterStoreUnavailable",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "CheckoutRequest",
    "CheckoutSession",
    "Document",
    "ENTRY_POINT_GROUP",
    "Embeddings",
    "FAMILIES",
    "Forbidden",
    "InvalidSignature",
    "KnowledgeConnector",
    "LICENSE_CODES",
    "License",
    "LicenseBackend",
    "LicenseRequest",
    "ModelInfo",
    "Unauthorized",
    "Usage",
    "VectorMatch",
    "VectorStore",
    "Verification",
    "Authenticator",
    "ConfigError",
    "Conflict",
    "DatabaseError",
    "DuplicateProviderError",
    "Event",
    "InvalidInput",
    "Kernel",
    "Model",
    "NotFound",
    "PluginError",
    "PluginSettings",
    "Principal",
    "ProviderNotConfigured",
    "RateLimitResult",
    "RateLimited",
    "Settings",
    "StartupError",
    "Tool",
    "VendoError",
    "__version__",
    "cli_kernel",
    "current_principal",
    "optional_principal",
    "require_permission",
    "rate_limit_headers",
    "rate_limited",
    "require_feature",
    "require_role",
    "require_scope",
    "Role",
    "WorkspaceAccess",
    "counter_key",
    "counter_period",
    "create_app",
    "hookimpl",
    "on_rollback",
    "load_settings",
    "utcnow",
]
