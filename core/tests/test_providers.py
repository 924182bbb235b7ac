"""Capability families: registration by name, duplicates, all-or-nothing, active providers."""

from __future__ import annotations

import types
from typing import Any

import pytest

from vendo import ConfigError, Principal, ProviderNotConfigured, hookimpl

from kernel_support import provider_for


class Billing:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def vendo_register_billing_providers(self, register, kernel):
        for name in self.names:
            register(name, provider_for("billing", name, kernel=kernel))


class EveryFamily:
    """One plugin filling every capability family."""

    class Auth:
        def authenticate(self, request: Any) -> Principal | None:
            token = request.get("token")
            return Principal(subject="u1", workspace="w1", scopes=frozenset({"read"}), method="test") if token == "ok" else None

    class Echo:
        name = "echo"
        description = "Repeat the text"
        parameters = {"type": "object"}

        def run(self, arguments):
            return arguments

    @hookimpl
    def vendo_register_authenticators(self, register):
        register("token", self.Auth())

    @hookimpl
    def vendo_register_billing_providers(self, register):
        register("ledger", provider_for("billing", "ledger"))

    @hookimpl
    def vendo_register_license_backends(self, register):
        register("ed25519", provider_for("license", "ed25519"))

    @hookimpl
    def vendo_register_ai_providers(self, register):
        register("echo-ai", provider_for("ai", "echo-ai"))

    @hookimpl
    def vendo_register_knowledge_connectors(self, register):
        register("files", provider_for("knowledge", "files"))

    @hookimpl
    def vendo_register_vector_stores(self, register):
        register("numpy", provider_for("vector_store", "numpy"))

    @hookimpl
    def vendo_register_tools(self, register):
        register("echo", self.Echo())


def test_every_family_is_filled_and_attributed(make_kernel) -> None:
    kernel = make_kernel({"everything": EveryFamily()}).load()
    kernel.providers.configure({})
    summary = {family: [e for e in entries if e["plugin"] == "everything"]
               for family, entries in kernel.providers.summary().items()}
    for family, name in [("auth", "token"), ("billing", "ledger"), ("license", "ed25519"), ("ai", "echo-ai"),
                         ("knowledge", "files"), ("vector_store", "numpy"), ("tool", "echo")]:
        assert summary[family] == [{"name": name, "plugin": "everything", "active": True}]
    principal = kernel.providers.get("auth", "token").authenticate({"token": "ok"})
    assert principal.subject == "u1" and principal.method == "test"
    assert kernel.providers.get("tool", "echo").run({"a": 1}) == {"a": 1}


def test_single_provider_is_active_without_configuration(make_kernel) -> None:
    kernel = make_kernel({"billing-local": Billing("local")}).load()
    kernel.providers.configure({})
    provider = kernel.providers.get("billing")
    assert provider.name == "local" and provider.kernel is kernel


def test_no_provider_installed_is_a_clear_error(make_kernel) -> None:
    kernel = make_kernel().load()
    kernel.providers.configure({})
    with pytest.raises(ProviderNotConfigured, match="no billing provider is installed"):
        kernel.providers.get("billing")


def test_several_single_providers_need_a_choice(make_kernel) -> None:
    kernel = make_kernel({"billing-paddle": Billing("paddle"), "billing-stripe": Billing("stripe")}).load()
    with pytest.raises(ConfigError, match=r'several billing providers are installed \(paddle, stripe\): choose one'):
        kernel.providers.configure({})
    kernel.providers.configure({"billing": "stripe"})
    assert kernel.providers.get("billing").name == "stripe"
    assert [p["active"] for p in kernel.providers.summary()["billing"]] == [False, True]


def test_billing_falls_back_to_the_local_provider_when_none_is_chosen(make_kernel) -> None:
    """Several billing providers and no choice: the no-payment ``local`` one, never a card by surprise."""
    kernel = make_kernel({"billing-stripe": Billing("stripe"), "billing-local": Billing("local")}).load()
    kernel.providers.configure({})
    assert kernel.providers.get("billing").name == "local"
    assert [p["active"] for p in kernel.providers.summary()["billing"]] == [False, True]
    kernel.providers.configure({"billing": "stripe"})
    assert kernel.providers.get("billing").name == "stripe"


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ({"billing": "paypal"}, "no such billing provider is registered (local)"),
        ({"billing": ["local", "local"]}, "takes exactly one provider name"),
        ({"payments": "local"}, "unknown capability family 'payments'"),
    ],
)
def test_bad_provider_choices(make_kernel, choice, message) -> None:
    kernel = make_kernel({"billing-local": Billing("local")}).load()
    with pytest.raises(ConfigError) as info:
        kernel.providers.configure(choice)
    assert message in info.value.message


def test_multi_provider_family_order_follows_configuration(make_kernel) -> None:
    class Tools:
        def __init__(self, *names):
            self.names = names

        @hookimpl
        def vendo_register_tools(self, register):
            for name in self.names:
                register(name, types.SimpleNamespace(name=name, description="", parameters={}, run=lambda a: a))

    kernel = make_kernel({"tools": Tools("a", "b", "c")}).load()
    kernel.providers.configure({})
    assert [t.name for t in kernel.providers.active("tool")] == ["a", "b", "c"]
    kernel.providers.configure({"tool": ["c", "a"]})
    assert [t.name for t in kernel.providers.active("tool")] == ["c", "a"]


def test_duplicate_name_fails_the_second_plugin_naming_the_first(make_kernel) -> None:
    kernel = make_kernel({"first": Billing("stripe"), "second": Billing("other", "stripe")}).load()
    second = kernel.plugin("second")
    assert second.status == "failed"
    assert "billing provider 'stripe' is already registered by plugin 'first'" in second.error
    # all or nothing: 'other' was registered before the failure and is not kept
    assert [r.name for r in kernel.providers.registered("billing")] == ["stripe"]
    assert kernel.pm.get_plugin("second") is None


@pytest.mark.parametrize(
    ("family", "hook", "protocol"),
    [
        ("tool", "vendo_register_tools", "Tool"),
        ("billing", "vendo_register_billing_providers", "BillingProvider"),
        ("license", "vendo_register_license_backends", "LicenseBackend"),
        ("ai", "vendo_register_ai_providers", "AIProvider"),
        ("knowledge", "vendo_register_knowledge_connectors", "KnowledgeConnector"),
        ("vector_store", "vendo_register_vector_stores", "VectorStore"),
        ("auth", "vendo_register_authenticators", "Authenticator"),
    ],
)
def test_provider_not_implementing_its_protocol_fails_the_plugin(make_kernel, family, hook, protocol) -> None:
    incomplete = provider_for(family, "half")
    del incomplete.__dict__[sorted(set(vars(incomplete)) - {"name", "description", "parameters"})[0]]
    plugin = types.SimpleNamespace(**{hook: hookimpl(lambda register: register("half", incomplete))})
    kernel = make_kernel({"half": plugin}).load()
    assert kernel.plugin("half").status == "failed"
    assert f"{family} provider 'half' does not implement {protocol}" in kernel.plugin("half").error


def test_provider_settings_failure_registers_nothing(make_kernel) -> None:
    class Broken(Billing):
        @hookimpl
        def vendo_register_routes(self, register):
            raise RuntimeError("cannot build routes")

    kernel = make_kernel({"broken": Broken("x")}).load()
    assert kernel.plugin("broken").status == "failed"
    assert kernel.plugin("broken").error == "vendo_register_routes: RuntimeError: cannot build routes"
    assert kernel.providers.registered("billing") == []


class MemoryCounters:
    """A plugin adding a second counter store beside the kernel's built-in ``sql`` one."""

    @hookimpl
    def vendo_register_counter_stores(self, register):
        from vendo.entitlements.store import SQLCounterStore

        class Memory(SQLCounterStore):
            name = "memory"

        register("memory", Memory())


def test_the_built_in_provider_is_the_default_of_a_single_family(make_kernel) -> None:
    kernel = make_kernel({"counters-memory": MemoryCounters()}).load()
    kernel.providers.configure({})
    assert kernel.providers.get("counters").name == "sql"  # the kernel's, registered by its built-in plugin
    assert {e["name"]: (e["active"], e["plugin"]) for e in kernel.providers.summary()["counters"]} == {
        "sql": (True, "core"), "memory": (False, "counters-memory")}
    kernel.providers.configure({"counters": "memory"})
    assert kernel.providers.get("counters").name == "memory"


def test_several_non_built_in_providers_still_need_a_choice(make_kernel) -> None:
    kernel = make_kernel({"billing-acme": Billing("acme"), "billing-stripe": Billing("stripe"),
                          "counters-memory": MemoryCounters()}).load()
    with pytest.raises(ConfigError, match=r"several billing providers are installed"):
        kernel.providers.configure({})
