"""Registries of capability providers, filled by the ``vendo_register_*`` hooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vendo.capabilities import FAMILIES, Family
from vendo.errors import ConfigError, DuplicateProviderError, ProviderNotConfigured


@dataclass(frozen=True)
class Registration:
    """One provider registered by one plugin."""

    family: str
    name: str
    provider: Any
    plugin: str
    #: Registered by a built-in plugin of the kernel (the ``vendo`` distribution).
    builtin: bool = False


class Providers:
    """Every registered provider, by family, and which of them are active."""

    def __init__(self) -> None:
        self._by_family: dict[str, dict[str, Registration]] = {name: {} for name in FAMILIES}
        self._choice: dict[str, list[str]] = {}

    def collector(self, plugin: str, family: Family, pending: list[Registration], *, builtin: bool = False) -> Any:
        """The ``register(name, provider)`` callback handed to ``plugin`` for ``family``
        (``builtin``: ``plugin`` is one of the kernel's built-in plugins).

        Registrations go to ``pending`` and take effect with :meth:`commit`, so a plugin
        that fails half-way leaves nothing registered.
        """

        def register(name: str, provider: Any) -> None:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{family.name} provider names must be non-empty strings, got {name!r}")
            taken = self._by_family[family.name].get(name) or next(
                (r for r in pending if r.family == family.name and r.name == name), None
            )
            if taken is not None:
                raise DuplicateProviderError(
                    f"{family.name} provider '{name}' is already registered by plugin '{taken.plugin}'"
                )
            if family.protocol is not None and not isinstance(provider, family.protocol):
                raise TypeError(
                    f"{family.name} provider '{name}' does not implement {family.protocol.__name__}"
                )
            if family.name == "tool" and getattr(provider, "name", name) != name:
                raise ValueError(f"tool registered as '{name}' but its name is '{provider.name}'")
            pending.append(Registration(family.name, name, provider, plugin, builtin))

        return register

    def commit(self, registrations: list[Registration]) -> None:
        """Make a plugin's pending registrations effective."""
        for item in registrations:
            self._by_family[item.family][item.name] = item

    def registered(self, family: str) -> list[Registration]:
        """Every provider registered in ``family``, in registration order."""
        return list(self._family(family).values())

    def configure(self, choices: dict[str, str | list[str]]) -> None:
        """Apply ``[providers]`` settings and check each family's cardinality.

        A single-provider family with several providers installed and none chosen uses the
        kernel's built-in one (e.g. the ``sql`` counter store beside an installed Redis
        store), else its ``fallback`` provider when that one is installed (billing:
        ``local``); otherwise a choice is required.

        :raises ConfigError: unknown family, unknown provider name, a list for a
            single-provider family, or several providers installed with none chosen
            (and neither a built-in nor the fallback among them).
        """
        resolved: dict[str, list[str]] = {}
        for family_name, choice in choices.items():
            family = FAMILIES.get(family_name)
            if family is None:
                raise ConfigError(
                    f"[providers] names unknown capability family '{family_name}'; families are: {', '.join(FAMILIES)}"
                )
            names = [choice] if isinstance(choice, str) else list(choice)
            if family.single and len(names) != 1:
                raise ConfigError(f"[providers] {family_name} takes exactly one provider name, got {names}")
            for name in names:
                if name not in self._by_family[family_name]:
                    known = ", ".join(self._by_family[family_name]) or "none installed"
                    raise ConfigError(
                        f"[providers] {family_name} = '{name}', but no such {family_name} provider is registered ({known})"
                    )
            resolved[family_name] = names
        for family in FAMILIES.values():
            installed = list(self._by_family[family.name])
            if family.single and family.name not in resolved and len(installed) > 1:
                builtin = [r.name for r in self._by_family[family.name].values() if r.builtin]
                if len(builtin) == 1:
                    resolved[family.name] = builtin
                    continue
                if family.fallback in installed:
                    resolved[family.name] = [family.fallback]
                    continue
                raise ConfigError(
                    f"several {family.name} providers are installed ({', '.join(installed)}): choose one with "
                    f"[providers] {family.name} = \"...\" in vendo.toml or VENDO_PROVIDERS__{family.name.upper()}"
                )
        self._choice = resolved

    def active(self, family: str) -> list[Any]:
        """The active providers of a family, in order (all registered ones unless configured)."""
        registry = self._family(family)
        names = self._choice.get(family, list(registry))
        return [registry[name].provider for name in names]

    def get(self, family: str, name: str | None = None) -> Any:
        """One provider: by name, or the single active one of a family.

        :raises ProviderNotConfigured: when none is installed or the name is unknown.
        """
        registry = self._family(family)
        if name is not None:
            if name not in registry:
                raise ProviderNotConfigured(f"no {family} provider named '{name}' is registered")
            return registry[name].provider
        active = self.active(family)
        if not active:
            raise ProviderNotConfigured(
                f"no {family} provider is installed: install a plugin that provides one ({FAMILIES[family].description})"
            )
        if len(active) > 1:
            raise ProviderNotConfigured(f"several {family} providers are active; ask for one by name")
        return active[0]

    def summary(self) -> dict[str, list[dict[str, Any]]]:
        """Registered providers per family with their plugin and whether they are active."""
        out: dict[str, list[dict[str, Any]]] = {}
        for family, registry in self._by_family.items():
            active = set(self._choice.get(family, list(registry)))
            out[family] = [
                {"name": r.name, "plugin": r.plugin, "active": r.name in active} for r in registry.values()
            ]
        return out

    def _family(self, family: str) -> dict[str, Registration]:
        if family not in self._by_family:
            raise KeyError(f"unknown capability family '{family}'")
        return self._by_family[family]
