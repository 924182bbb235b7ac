"""Plugin discovery and registration on pluggy, one manager per kernel.

Order: the kernel's own built-in plugins (entry points of the ``vendo`` distribution,
always loaded), then plugins handed to the kernel explicitly, then entry points of the
group ``vendo.plugins`` sorted by name. Controls (``[plugins]`` settings): ``enabled``
(allow-list), ``disabled`` (block-list), ``autoload`` (entry-point discovery on/off),
``strict`` (any failure stops start-up) and ``trace`` (log every hook call).

A plugin that fails to import, declares an API range this kernel does not offer,
implements an unknown ``vendo_*`` hook or a hook with parameters the spec lacks is
reported with its error and skipped; the rest of the kernel still starts.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import pluggy

from vendo import hookspecs
from vendo._version import API_VERSION

if TYPE_CHECKING:  # pragma: no cover
    from importlib.metadata import EntryPoint

log = logging.getLogger("vendo.plugins")

ENTRY_POINT_GROUP = "vendo.plugins"
KERNEL_DISTRIBUTION = "vendo"

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT_NAME)

Status = Literal["ok", "disabled", "failed", "incompatible"]


@dataclass
class PluginInfo:
    """What the kernel knows about one plugin: where it comes from and how it loaded."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: Status = "ok"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    api: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form, as in ``vendo plugins list --json`` and ``/api/health``."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "hooks": list(self.hooks),
            "api": self.api,
        }


class VendoPluginManager(pluggy.PluginManager):
    """pluggy's manager, also accepting ``vendo_*`` functions that lack the marker
    (as pytest does for ``pytest_*``), so a forgotten decorator never hides a hook."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("vendo_"):
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                return {
                    "wrapper": False,
                    "hookwrapper": False,
                    "optionalhook": False,
                    "tryfirst": False,
                    "trylast": False,
                    "specname": None,
                }
        return opts


def new_plugin_manager() -> VendoPluginManager:
    """A fresh manager holding every Vendo hookspec (one per kernel, never global)."""
    pm = VendoPluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


@dataclass
class Candidate:
    """A plugin found but not yet imported."""

    name: str
    load: Callable[[], object]
    module: str
    distribution: str | None
    version: str | None
    builtin: bool


def _from_entry_point(ep: EntryPoint) -> Candidate:
    dist = ep.dist
    return Candidate(
        name=ep.name,
        load=ep.load,
        module=ep.value,
        distribution=dist.name if dist else None,
        version=dist.version if dist else None,
        builtin=bool(dist and dist.name == KERNEL_DISTRIBUTION),
    )


def discover(explicit: dict[str, object] | None, autoload: bool) -> list[Candidate]:
    """Candidates in load order: built-ins, explicit plugins, then entry points by name."""
    from importlib.metadata import entry_points  # imported here: it costs ~50 ms at `import vendo`

    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    builtins = [_from_entry_point(ep) for ep in eps if ep.dist and ep.dist.name == KERNEL_DISTRIBUTION]
    found = list(builtins)
    for name, obj in (explicit or {}).items():
        module = getattr(obj, "__name__", type(obj).__name__)
        found.append(Candidate(name, (lambda obj=obj: obj), module, None, None, False))
    if autoload:
        found += [_from_entry_point(ep) for ep in eps if not (ep.dist and ep.dist.name == KERNEL_DISTRIBUTION)]
    return found


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_api(obj: object) -> tuple[str | None, str | None]:
    """Compare the plugin's declared ``vendo_api`` range with this kernel's API version.

    :return: ``(declared_range, problem)``; ``problem`` is ``None`` when compatible.
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    declared = getattr(obj, "vendo_api", None)
    if declared is None:
        return None, None
    try:
        spec = SpecifierSet(str(declared))
    except InvalidSpecifier:
        return str(declared), f"invalid vendo_api range {declared!r} (write e.g. '>=1.0,<2')"
    if not spec.contains(API_VERSION, prereleases=True):
        return str(declared), f"supports vendo API {declared}, but this kernel offers API {API_VERSION}"
    return str(declared), None


def register_plugin(pm: VendoPluginManager, name: str, obj: object) -> tuple[list[str], str | None]:
    """Register ``obj`` under ``name``; on any problem leave nothing registered.

    :return: ``(hook names implemented, error or None)``.
    """
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        return [], _describe_validation(exc)
    except ValueError as exc:  # same object or name already registered
        return [], str(exc)
    callers = pm.get_hookcallers(obj) or []
    unknown = [c.name for c in callers if not c.has_spec()]
    problems = []
    for hook_name in unknown:
        close = difflib.get_close_matches(hook_name, _spec_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"implements unknown hook {hook_name}{hint}")
    for caller in callers:
        for impl in caller.get_hookimpls():
            if impl.plugin is not obj:
                continue
            if impl.hookwrapper or impl.wrapper:
                problems.append(f"{caller.name}: hook wrappers are not supported on Vendo hooks")
            problems += _signature_problems(caller.name, impl.function)
    if problems:
        pm.unregister(obj)
        return [], "; ".join(problems)
    return sorted(c.name for c in callers), None


def _signature_problems(hook: str, function: Callable[..., Any]) -> list[str]:
    """Parameters the kernel would never fill, and ``async def`` where nothing awaits."""
    problems = []
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return problems
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            problems.append(f"{hook}: *args/**kwargs are never filled; name the parameters you need")
        elif parameter.kind is parameter.KEYWORD_ONLY:
            problems.append(f"{hook}: keyword-only parameter '{parameter.name}' is never filled; make it positional")
        elif parameter.default is not parameter.empty and parameter.name != "self":
            problems.append(f"{hook}: parameter '{parameter.name}' has a default and would never be filled; remove the default")
    if inspect.iscoroutinefunction(function) and hook not in hookspecs.ASYNC_HOOKS:
        problems.append(f"{hook}: is called synchronously, so an async def implementation would never run")
    return problems


def _describe_validation(exc: pluggy.PluginValidationError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "definition:" not in line]
    return "hook signature does not match its spec: " + "; ".join(lines)


def _spec_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("vendo_")]
