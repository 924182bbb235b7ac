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
from vendo.capabilities import FAMILIES, Authenticator, Principal, Tool
from vendo.errors import (
    ConfigError,
    Conflict,
    DatabaseError,
    DuplicateProviderError,
    InvalidInput,
    NotFound,
    PluginError,
    ProviderNotConfigured,
    StartupError,
    VendoError,
)
from vendo.events import Event
from vendo.plugins import ENTRY_POINT_GROUP, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from vendo.app import create_app
    from vendo.cli import cli_kernel
    from vendo.config import PluginSettings, Settings, load_settings
    from vendo.db import Model, utcnow
    from vendo.kernel import Kernel

_LAZY = {
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
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
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
    "Settings",
    "StartupError",
    "Tool",
    "VendoError",
    "__version__",
    "cli_kernel",
    "create_app",
    "hookimpl",
    "load_settings",
    "utcnow",
]
