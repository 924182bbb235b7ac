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
    SUBSCRIPTION_STATUSES,
    CatalogPrice,
    Invoice,
    PortalSession,
    SubscriptionChange,
    SubscriptionInfo,
    UsageReport,
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
    EmailMessage,
    NOTIFICATION_REQUESTED,
    Notification,
    Notifier,
    Embeddings,
    KnowledgeConnector,
    License,
    LicenseBackend,
    OfflineLicenseBackend,
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
    ProviderUnavailable,
    StartupError,
    Unauthorized,
    UpstreamError,
    VendoError,
)
from vendo.events import Event
from vendo.plugins import ENTRY_POINT_GROUP, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from vendo.app import create_app
    from vendo.cli import cli_kernel
    from vendo.billing.service import ZERO_DECIMAL, LookupKey, minor_units, parse_lookup_key
    from vendo.config import PluginSettings, Settings, check_link_template, load_settings
    from vendo.db import READ_ONLY, Model, utcnow
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
    from vendo.identity.models import Membership
    from vendo.identity.roles import Role
    from vendo.identity.service import normalize_email
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
    "check_link_template": "vendo.config",
    "minor_units": "vendo.billing.service",
    "parse_lookup_key": "vendo.billing.service",
    "LookupKey": "vendo.billing.service",
    "ZERO_DECIMAL": "vendo.billing.service",
    "Model": "vendo.db",
    "utcnow": "vendo.db",
    "READ_ONLY": "vendo.db",
    "Membership": "vendo.identity.models",
    "normalize_email": "vendo.identity.service",
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
    "__version__",
    "AIProvider",
    "API_VERSION",
    "Authenticator",
    "BILLING_EVENT_TYPES",
    "BillingEvent",
    "BillingProvider",
    "Bucket",
    "CatalogPrice",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "CheckoutRequest",
    "CheckoutSession",
    "check_link_template",
    "cli_kernel",
    "ConfigError",
    "Conflict",
    "counter_key",
    "counter_period",
    "CounterStore",
    "CounterStoreUnavailable",
    "create_app",
    "current_principal",
    "DatabaseError",
    "Document",
    "DuplicateProviderError",
    "EmailMessage",
    "Embeddings",
    "ENTRY_POINT_GROUP",
    "Event",
    "FAMILIES",
    "Forbidden",
    "hookimpl",
    "InvalidInput",
    "InvalidSignature",
    "Invoice",
    "Kernel",
    "KnowledgeConnector",
    "License",
    "LICENSE_CODES",
    "LicenseBackend",
    "OfflineLicenseBackend",
    "LicenseRequest",
    "load_settings",
    "LookupKey",
    "Membership",
    "minor_units",
    "Model",
    "ModelInfo",
    "normalize_email",
    "NotFound",
    "NOTIFICATION_REQUESTED",
    "Notification",
    "Notifier",
    "on_rollback",
    "optional_principal",
    "parse_lookup_key",
    "PluginError",
    "PluginSettings",
    "PortalSession",
    "Principal",
    "ProviderNotConfigured",
    "ProviderUnavailable",
    "rate_limit_headers",
    "rate_limited",
    "RateLimited",
    "RateLimitResult",
    "READ_ONLY",
    "ZERO_DECIMAL",
    "require_feature",
    "require_permission",
    "require_role",
    "require_scope",
    "Role",
    "Settings",
    "StartupError",
    "SUBSCRIPTION_STATUSES",
    "SubscriptionChange",
    "SubscriptionInfo",
    "Tool",
    "Unauthorized",
    "UpstreamError",
    "Usage",
    "UsageReport",
    "utcnow",
    "VectorMatch",
    "VectorStore",
    "VendoError",
    "Verification",
    "WorkspaceAccess",
]
