"""Contract suites: what every provider of a capability family must do.

Subclass the suite of your family in your plugin's tests, name the plugin and the provider,
and fill the few hooks the suite asks for::

    from vendo_sdk.contracts import ToolContract
    import vendo_tool_weather

    class TestWeatherTool(ToolContract):
        plugin = vendo_tool_weather          # the module your entry point names
        plugin_name = "tool-weather"         # your entry point's name
        provider_name = "weather"            # the name you register
        sample_arguments = {"city": "Paris"}
        invalid_arguments = {"city": 42}

Every test goes through a real kernel: the plugin is registered by its hooks, exactly as in
production, and the provider is taken from the kernel's registry. Set ``plugin = None`` to
load the installed entry point ``plugin_name`` instead (what CI of a published plugin does).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, ClassVar, Mapping

import pytest


async def _resolve(value: Any) -> Any:
    import inspect

    return await value if inspect.isawaitable(value) else value


class ProviderContract:
    """Shared part of every family's suite: registration through the kernel."""

    family: ClassVar[str] = ""
    plugin: ClassVar[Any] = None
    plugin_name: ClassVar[str] = ""
    provider_name: ClassVar[str] = ""
    #: Your plugin's settings for the test kernel (its ``[plugin-name]`` table).
    plugin_settings: ClassVar[Mapping[str, Any]] = {}
    #: Kernel setting overrides for the test kernel.
    kernel_settings: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture
    def kernel(self, vendo_kernel: Any) -> Any:
        """A kernel holding only this plugin."""
        plugins: Any = [self.plugin_name] if self.plugin is None else {self.plugin_name: self.plugin}
        return vendo_kernel(plugins, plugin_settings={self.plugin_name: dict(self.plugin_settings)},
                            **dict(self.kernel_settings))

    @pytest.fixture
    def provider(self, kernel: Any) -> Any:
        """The provider under test, as the kernel's registry holds it."""
        return kernel.providers.get(self.family, self.provider_name)

    def test_plugin_loads(self, kernel: Any) -> None:
        info = kernel.plugin(self.plugin_name)
        assert info is not None, f"plugin {self.plugin_name!r} was not found"
        assert info.status == "ok", f"plugin {self.plugin_name!r} is {info.status}: {info.error}"

    def test_provider_is_registered_by_this_plugin(self, kernel: Any) -> None:
        registered = {r.name: r.plugin for r in kernel.providers.registered(self.family)}
        assert registered.get(self.provider_name) == self.plugin_name, (
            f"{self.family} provider {self.provider_name!r} not registered by {self.plugin_name!r}: {registered}"
        )

    def test_implements_the_family_protocol(self, provider: Any) -> None:
        from vendo.capabilities import FAMILIES

        protocol = FAMILIES[self.family].protocol
        assert isinstance(provider, protocol), f"provider does not implement {protocol.__name__}"


# -- tools --------------------------------------------------------------------------------


class ToolContract(ProviderContract):
    """Tools: JSON-schema parameters, JSON results, ``InvalidInput`` for bad arguments."""

    family = "tool"
    sample_arguments: ClassVar[dict[str, Any]] = {}
    #: Arguments the tool must refuse with ``vendo.InvalidInput`` (``None``: not tested).
    invalid_arguments: ClassVar[dict[str, Any] | None] = None

    def test_describes_itself(self, provider: Any) -> None:
        assert provider.name == self.provider_name
        assert isinstance(provider.description, str) and provider.description.strip()

    def test_parameters_are_a_json_schema_object(self, provider: Any) -> None:
        schema = provider.parameters
        assert schema.get("type") == "object", "parameters must be a JSON schema of type 'object'"
        assert isinstance(schema.get("properties", {}), dict)
        json.dumps(schema)
        missing = set(schema.get("required", [])) - set(self.sample_arguments)
        assert not missing, f"sample_arguments lack required parameters {sorted(missing)}"

    @pytest.mark.asyncio
    async def test_runs_and_returns_json(self, provider: Any) -> None:
        result = await _resolve(provider.run(dict(self.sample_arguments)))
        json.dumps(result)

    @pytest.mark.asyncio
    async def test_refuses_invalid_arguments(self, provider: Any) -> None:
        from vendo import InvalidInput

        if self.invalid_arguments is None:
            pytest.skip("invalid_arguments not given")
        with pytest.raises(InvalidInput):
            await _resolve(provider.run(dict(self.invalid_arguments)))


# -- auth -----------------------------------------------------------------------------------


class AuthenticatorContract(ProviderContract):
    """Authenticators: a principal for good credentials, ``None`` for other kinds,
    ``Unauthorized`` for bad ones. Requests are built with :func:`make_request`."""

    family = "auth"

    def valid_request(self) -> Any:
        """A request carrying good credentials of this authenticator's kind."""
        pytest.fail(f"{type(self).__name__} must define valid_request(): a request with good credentials")

    def invalid_request(self) -> Any:
        """A request carrying credentials of this kind that must be rejected."""
        pytest.fail(f"{type(self).__name__} must define invalid_request(): a request with rejected credentials")

    def foreign_request(self) -> Any:
        """A request without credentials of this kind (the chain must go on)."""
        return make_request()

    @pytest.mark.asyncio
    async def test_valid_credentials_give_a_principal(self, provider: Any) -> None:
        from vendo import Principal

        principal = await _resolve(provider.authenticate(self.valid_request()))
        assert isinstance(principal, Principal)
        assert principal.subject and principal.method
        assert isinstance(principal.scopes, frozenset)

    @pytest.mark.asyncio
    async def test_other_credentials_pass_to_the_next_authenticator(self, provider: Any) -> None:
        assert await _resolve(provider.authenticate(self.foreign_request())) is None

    @pytest.mark.asyncio
    async def test_bad_credentials_are_rejected(self, provider: Any) -> None:
        from vendo import Unauthorized

        with pytest.raises(Unauthorized):
            await _resolve(provider.authenticate(self.invalid_request()))


def make_request(method: str = "GET", path: str = "/", headers: Mapping[str, str] | None = None) -> Any:
    """A Starlette request as an authenticator receives it in the app."""
    from starlette.requests import Request

    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw, "query_string": b""}
    return Request(scope)


# -- billing ------------------------------------------------------------------------------------


class BillingProviderContract(ProviderContract):
    """Billing providers: idempotent customers and checkouts, verified, normalized webhooks."""

    family = "billing"
    plan: ClassVar[str] = "pro"

    def signed_webhook(self, provider: Any) -> tuple[dict[str, str], bytes]:
        """Headers and body of a genuine webhook delivery this provider must accept."""
        pytest.fail(f"{type(self).__name__} must define signed_webhook(provider) -> (headers, body)")

    async def subscription_id(self, provider: Any) -> str | None:
        """An existing subscription the suite may cancel (``None``: not tested)."""
        return None

    @pytest.mark.asyncio
    async def test_customer_creation_is_idempotent(self, provider: Any) -> None:
        first = await provider.create_customer("user-1", "ada@example.com")
        again = await provider.create_customer("user-1", "ada@example.com")
        other = await provider.create_customer("user-2", "bob@example.com")
        assert isinstance(first, str) and first
        assert first == again and first != other

    @pytest.mark.asyncio
    async def test_checkout_opens_a_session_idempotently(self, provider: Any) -> None:
        from vendo import CheckoutRequest

        request = CheckoutRequest(subject="user-1", plan=self.plan, success_url="https://app.test/ok",
                                  cancel_url="https://app.test/cancel", idempotency_key="chk-1")
        session = await provider.create_checkout(request)
        assert session.id and session.url.startswith(("http://", "https://"))
        assert (await provider.create_checkout(request)).id == session.id

    def test_genuine_webhook_is_translated(self, provider: Any) -> None:
        from vendo import BILLING_EVENT_TYPES

        headers, body = self.signed_webhook(provider)
        events = provider.parse_webhook(headers, body)
        assert events, "a genuine webhook must produce at least one event"
        for event in events:
            assert event.id and event.type in BILLING_EVENT_TYPES
            assert event.occurred_at.tzinfo is not None

    def test_tampered_webhook_is_rejected(self, provider: Any) -> None:
        from vendo import InvalidSignature

        headers, body = self.signed_webhook(provider)
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(headers, body.replace(b"}", b" }", 1) if b"}" in body else body + b" ")

    def test_unsigned_webhook_is_rejected(self, provider: Any) -> None:
        from vendo import InvalidSignature

        _headers, body = self.signed_webhook(provider)
        with pytest.raises(InvalidSignature):
            provider.parse_webhook({}, body)

    @pytest.mark.asyncio
    async def test_cancel_subscription(self, provider: Any) -> None:
        subscription = await self.subscription_id(provider)
        if subscription is None:
            pytest.skip("subscription_id() not provided")
        await provider.cancel_subscription(subscription, at_period_end=False)


# -- licensing ------------------------------------------------------------------------------------


class LicenseBackendContract(ProviderContract):
    """License backends: issue, verify with machine-readable codes, revoke, activations."""

    family = "license"

    def _request(self, **changes: Any) -> Any:
        from vendo import LicenseRequest

        base = {"email": "ada@example.com", "tier": "pro", "features": ("er_diagram",)}
        base.update(changes)
        return LicenseRequest(**base)

    def test_issued_key_verifies(self, provider: Any) -> None:
        issued = provider.issue(self._request())
        result = provider.verify(issued.key)
        assert result.code == "valid" and result.valid
        assert result.license.email == "ada@example.com" and result.license.tier == "pro"
        assert "er_diagram" in result.license.features

    def test_altered_key_is_rejected(self, provider: Any) -> None:
        key = provider.issue(self._request()).key
        position = len(key) // 2
        altered = key[:position] + ("A" if key[position] != "A" else "B") + key[position + 1:]
        assert not provider.verify(altered).valid

    @pytest.mark.parametrize("garbage", ["", "not-a-key", "x" * 10_000, "\x00\xff"])
    def test_garbage_is_malformed_never_an_exception(self, provider: Any, garbage: str) -> None:
        assert provider.verify(garbage).code == "malformed_key"

    def test_expired_key(self, provider: Any, kernel: Any) -> None:
        past = kernel.now() - timedelta(days=1)
        issued = provider.issue(self._request(expires_at=past))
        assert provider.verify(issued.key).code == "expired"

    def test_revoked_key(self, provider: Any) -> None:
        issued = provider.issue(self._request())
        provider.revoke(issued.id)
        assert provider.verify(issued.key).code == "revoked"

    def test_machine_binding(self, provider: Any) -> None:
        issued = provider.issue(self._request(machine="machine-a"))
        assert provider.verify(issued.key, machine="machine-a").valid
        assert provider.verify(issued.key, machine="machine-b").code == "machine_mismatch"

    def test_activation_limit(self, provider: Any) -> None:
        issued = provider.issue(self._request(max_machines=2))
        assert provider.activate(issued.key, "m1").valid
        assert provider.activate(issued.key, "m2").valid
        assert provider.activate(issued.key, "m1").valid  # re-activating a machine is idempotent
        assert provider.activate(issued.key, "m3").code == "activation_limit"
        assert sorted(provider.activations(issued.key)) == ["m1", "m2"]
        provider.deactivate(issued.key, "m1")
        assert provider.activate(issued.key, "m3").valid
        assert sorted(provider.activations(issued.key)) == ["m2", "m3"]


# -- AI ------------------------------------------------------------------------------------------


class AIProviderContract(ProviderContract):
    """AI providers: models, chat, streaming, embeddings, tokens and cost."""

    family = "ai"
    chat_model: ClassVar[str] = ""
    embedding_model: ClassVar[str | None] = None
    #: Same input, same output (local or mocked models): streaming must equal chat exactly.
    deterministic: ClassVar[bool] = False

    def _request(self, **changes: Any) -> Any:
        from vendo import ChatRequest

        base = {"model": self.chat_model, "messages": ({"role": "user", "content": "Say hello to Ada."},),
                "temperature": 0.0}
        base.update(changes)
        return ChatRequest(**base)

    @pytest.mark.asyncio
    async def test_models_are_listed(self, provider: Any) -> None:
        ids = {m.id for m in await provider.models()}
        assert self.chat_model in ids
        if self.embedding_model:
            assert self.embedding_model in ids

    @pytest.mark.asyncio
    async def test_chat(self, provider: Any) -> None:
        response = await provider.chat(self._request())
        assert response.content and response.finish_reason
        assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0

    @pytest.mark.asyncio
    async def test_stream(self, provider: Any) -> None:
        chunks = [chunk async for chunk in provider.stream(self._request())]
        assert chunks, "a stream yields at least one chunk"
        assert chunks[-1].finish_reason, "the last chunk carries finish_reason"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        text = "".join(c.delta for c in chunks)
        assert text
        if self.deterministic:
            assert text == (await provider.chat(self._request())).content

    @pytest.mark.asyncio
    async def test_unknown_model(self, provider: Any) -> None:
        from vendo import NotFound

        with pytest.raises(NotFound) as info:
            await provider.chat(self._request(model="no-such-model-xyz"))
        assert info.value.code == "model_not_found"

    @pytest.mark.asyncio
    async def test_embeddings(self, provider: Any) -> None:
        if not self.embedding_model:
            pytest.skip("embedding_model not given")
        result = await provider.embed(self.embedding_model, ["first text", "second text"])
        assert len(result.vectors) == 2
        assert len(result.vectors[0]) == len(result.vectors[1]) > 0
        assert result.vectors[0] != result.vectors[1]

    def test_tokens_and_cost(self, provider: Any) -> None:
        from vendo import Usage

        messages = [{"role": "user", "content": "Say hello to Ada."}]
        tokens = provider.count_tokens(self.chat_model, messages)
        assert isinstance(tokens, int) and tokens > 0
        assert provider.count_tokens(self.chat_model, messages * 2) > tokens
        cost = provider.cost(self.chat_model, Usage(prompt_tokens=1000, completion_tokens=1000))
        assert isinstance(cost, float) and cost >= 0.0


# -- knowledge ------------------------------------------------------------------------------------


class KnowledgeConnectorContract(ProviderContract):
    """Knowledge connectors: documents with stable unique ids, ``InvalidInput`` for bad sources."""

    family = "knowledge"

    def source(self, tmp_path: Any) -> dict[str, Any]:
        """A source holding at least one document (may create files under ``tmp_path``)."""
        pytest.fail(f"{type(self).__name__} must define source(tmp_path): a source with at least one document")

    def invalid_source(self, tmp_path: Any) -> dict[str, Any]:
        """A source description this connector must refuse."""
        return {}

    @pytest.mark.asyncio
    async def test_fetches_documents_with_stable_ids(self, provider: Any, tmp_path: Any) -> None:
        source = self.source(tmp_path)
        first = [doc async for doc in provider.fetch(source)]
        second = [doc async for doc in provider.fetch(source)]
        assert first, "the source must yield documents"
        ids = [doc.id for doc in first]
        assert len(set(ids)) == len(ids), "document ids must be unique"
        assert ids == [doc.id for doc in second], "document ids must be stable across fetches"
        for doc in first:
            assert doc.title and doc.text.strip()

    @pytest.mark.asyncio
    async def test_invalid_source_is_refused(self, provider: Any, tmp_path: Any) -> None:
        from vendo import InvalidInput

        with pytest.raises(InvalidInput):
            [doc async for doc in provider.fetch(self.invalid_source(tmp_path))]


class VectorStoreContract(ProviderContract):
    """Vector stores: nearest first, upserts replace, namespaces never mix, deletes."""

    family = "vector_store"

    @pytest.mark.asyncio
    async def test_nearest_first(self, provider: Any) -> None:
        await provider.upsert("ns", [("a", [1.0, 0.0, 0.0], {"t": "a"}), ("b", [0.0, 1.0, 0.0], {"t": "b"}),
                                     ("c", [0.7, 0.7, 0.0], {"t": "c"})])
        matches = await provider.query("ns", [1.0, 0.1, 0.0], top_k=2)
        assert [m.id for m in matches] == ["a", "c"]
        assert matches[0].score >= matches[1].score and matches[0].metadata == {"t": "a"}

    @pytest.mark.asyncio
    async def test_upsert_replaces_and_delete_removes(self, provider: Any) -> None:
        await provider.upsert("ns", [("a", [1.0, 0.0], {"v": 1})])
        await provider.upsert("ns", [("a", [0.0, 1.0], {"v": 2})])
        matches = await provider.query("ns", [0.0, 1.0], top_k=5)
        assert [(m.id, m.metadata["v"]) for m in matches] == [("a", 2)]
        await provider.delete("ns", ["a", "never-existed"])
        assert await provider.query("ns", [0.0, 1.0], top_k=5) == []

    @pytest.mark.asyncio
    async def test_namespaces_are_isolated(self, provider: Any) -> None:
        await provider.upsert("tenant-a", [("x", [1.0, 0.0], {})])
        await provider.upsert("tenant-b", [("y", [1.0, 0.0], {})])
        assert [m.id for m in await provider.query("tenant-a", [1.0, 0.0])] == ["x"]
        assert [m.id for m in await provider.query("tenant-b", [1.0, 0.0])] == ["y"]


SUITES: dict[str, type[ProviderContract]] = {
    "tool": ToolContract,
    "auth": AuthenticatorContract,
    "billing": BillingProviderContract,
    "license": LicenseBackendContract,
    "ai": AIProviderContract,
    "knowledge": KnowledgeConnectorContract,
    "vector_store": VectorStoreContract,
}
