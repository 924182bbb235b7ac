"""vendo-ai-litellm passes the SDK's AI contract suite against a real OpenAI-compatible
server on loopback, on both of its paths: the direct one (OpenAI's wire format on pooled
aiohttp connections, the default for ``openai/`` models) and litellm's normal HTTP code path
(``wire = "litellm"``, ``api_base``); and maps vendor errors the same way on both."""

from __future__ import annotations

import logging
from typing import Any, Iterator

import pytest

import vendo_ai_litellm
from vendo_ai_litellm.upstream import Upstream
from vendo_sdk.contracts import AIProviderContract

_UPSTREAM = Upstream(api_key="sk-operator-key")


@pytest.fixture(scope="module", autouse=True)
def upstream() -> Iterator[Upstream]:
    """One loopback upstream for this module."""
    _UPSTREAM.start()
    yield _UPSTREAM
    _UPSTREAM.stop()


WIRES = ["auto", "litellm"]


def litellm_settings(upstream: Upstream, wire: str = "auto", **more: Any) -> dict[str, Any]:
    """Settings routing ``chat-small``/``embed-small`` to the loopback upstream (``wire``:
    ``auto`` takes the direct path for these ``openai/`` models, ``litellm`` goes through litellm)."""
    settings = {"api_key": "sk-operator-key", "api_base": upstream.base_url, "timeout": 2.0, "models": [
        {"id": "chat-small", "model": "openai/loopback-chat", "input_cost_per_token": 0.000001,
         "output_cost_per_token": 0.000002},
        {"id": "embed-small", "model": "openai/loopback-embed", "kind": "embedding"},
    ], **more}
    for model in settings["models"]:
        model.setdefault("wire", wire)
    return settings


class TestLiteLLMContract(AIProviderContract):
    plugin = vendo_ai_litellm
    plugin_name = "ai-litellm"
    provider_name = "litellm"
    chat_model = "chat-small"
    embedding_model = "embed-small"
    deterministic = True

    wire = "auto"

    @pytest.fixture
    def kernel(self, vendo_kernel: Any, upstream: Upstream) -> Any:
        return vendo_kernel({self.plugin_name: self.plugin},
                            plugin_settings={self.plugin_name: litellm_settings(upstream, self.wire)})


class TestLiteLLMContractThroughLiteLLM(TestLiteLLMContract):
    """The same suite on litellm's own code path."""

    wire = "litellm"


@pytest.fixture(params=WIRES)
def provider(request: pytest.FixtureRequest, vendo_kernel: Any, upstream: Upstream) -> Iterator[Any]:
    upstream.set_mode("ok")
    kernel = vendo_kernel({"ai-litellm": vendo_ai_litellm}, plugin_settings={"ai-litellm": litellm_settings(
        upstream, request.param, models=[
            {"id": "chat-small", "model": "openai/loopback-chat", "fallbacks": ["chat-backup"]},
            {"id": "chat-backup", "model": "openai/loopback-backup", "api_base": upstream.base_url},
            {"id": "chat-alone", "model": "openai/loopback-chat"},
        ])})
    yield kernel.providers.get("ai", "litellm")
    upstream.set_mode("ok")


def test_routes_take_the_direct_path_only_on_openais_wire_format(vendo_kernel: Any, upstream: Upstream) -> None:
    kernel = vendo_kernel({"ai-litellm": vendo_ai_litellm}, plugin_settings={"ai-litellm": litellm_settings(
        upstream, models=[
            {"id": "a", "model": "openai/gpt-4o-mini"},
            {"id": "b", "model": "anthropic/claude-3-5-haiku-latest"},
            {"id": "c", "model": "hosted_vllm/meta-llama/Llama-3", "wire": "openai"},
            {"id": "d", "model": "openai/gpt-4o-mini", "wire": "litellm"},
        ])})
    provider = kernel.providers.get("ai", "litellm")
    assert [provider.route(m).direct for m in "abcd"] == [True, False, True, False]


async def test_a_fallback_chain_mixes_both_paths(vendo_kernel: Any, upstream: Upstream) -> None:
    """The direct route cannot reach its vendor (connection refused): its fallback goes through litellm."""
    from vendo import ChatRequest

    kernel = vendo_kernel({"ai-litellm": vendo_ai_litellm}, plugin_settings={"ai-litellm": litellm_settings(
        upstream, models=[
            {"id": "direct", "model": "openai/loopback-broken", "api_base": "http://127.0.0.1:9/v1",
             "fallbacks": ["through-litellm"]},
            {"id": "through-litellm", "model": "openai/loopback-chat", "wire": "litellm"},
        ])})
    provider = kernel.providers.get("ai", "litellm")
    before = len(upstream.requests)
    response = await provider.chat(ChatRequest(model="direct", messages=({"role": "user", "content": "hi there"},)))
    assert response.content == "Echo: hi there" and response.model == "direct"
    chunks = [c async for c in provider.stream(ChatRequest(model="direct",
                                                            messages=({"role": "user", "content": "hi"},)))]
    assert "".join(c.delta for c in chunks) == "Echo: hi" and chunks[-1].usage.completion_tokens == 2
    assert [r.body["model"] for r in upstream.requests[before:]] == ["loopback-chat", "loopback-chat"]


async def test_the_byok_key_reaches_the_vendor_instead_of_the_operator_key(provider: Any, upstream: Upstream) -> None:
    from vendo import ChatRequest, Unauthorized

    request = ChatRequest(model="chat-alone", messages=({"role": "user", "content": "hi"},))
    await provider.chat(request)
    assert upstream.requests[-1].authorization == "Bearer sk-operator-key"
    with pytest.raises(Unauthorized) as info:
        await provider.chat(ChatRequest(model="chat-alone", messages=request.messages, api_key="sk-user-own-key"))
    assert upstream.requests[-1].authorization == "Bearer sk-user-own-key"
    assert info.value.code == "provider_key_rejected" and info.value.details == {"provider": "openai"}
    assert "sk-user-own-key" not in info.value.message


async def test_upstream_failure_falls_back_then_reports_502(provider: Any, upstream: Upstream) -> None:
    from vendo import ChatRequest, UpstreamError

    upstream.set_mode("fail")
    before = len(upstream.requests)
    with pytest.raises(UpstreamError) as info:
        await provider.chat(ChatRequest(model="chat-small", messages=({"role": "user", "content": "hi"},)))
    assert info.value.status_code == 502
    assert [r.body["model"] for r in upstream.requests[before:]] == ["loopback-chat", "loopback-backup"]


async def test_timeout_is_an_upstream_timeout(provider: Any, upstream: Upstream) -> None:
    from vendo import ChatRequest, UpstreamError

    upstream.set_mode("timeout", delay=3.0)
    with pytest.raises(UpstreamError) as info:
        await provider.chat(ChatRequest(model="chat-alone", messages=({"role": "user", "content": "hi"},),
                                        timeout=0.3))
    assert info.value.code == "upstream_timeout"


async def test_stream_refused_before_the_first_chunk(provider: Any, upstream: Upstream) -> None:
    from vendo import ChatRequest, Unauthorized

    upstream.set_mode("unauthorized")
    with pytest.raises(Unauthorized):
        async for _chunk in provider.stream(ChatRequest(model="chat-alone",
                                                        messages=({"role": "user", "content": "hi"},))):
            pass


def test_cost_uses_the_configured_prices(vendo_kernel: Any, upstream: Upstream) -> None:
    from vendo import Usage

    kernel = vendo_kernel({"ai-litellm": vendo_ai_litellm},
                          plugin_settings={"ai-litellm": litellm_settings(upstream)})
    provider = kernel.providers.get("ai", "litellm")
    assert provider.cost("chat-small", Usage(1000, 500)) == pytest.approx(0.002)
    assert provider.cost("embed-small", Usage(1000, 0)) == 0.0


async def test_mapping_with_litellm_mock_response(vendo_kernel: Any, upstream: Upstream) -> None:
    """litellm's ``mock_response`` (no HTTP) is only used here, for the response mapping."""
    from vendo import ChatRequest

    kernel = vendo_kernel({"ai-litellm": vendo_ai_litellm},
                          plugin_settings={"ai-litellm": litellm_settings(upstream, "litellm")})
    provider = kernel.providers.get("ai", "litellm")
    request = ChatRequest(model="chat-small", messages=({"role": "user", "content": "x"},),
                          extra={"mock_response": "mapped reply"})
    response = await provider.chat(request)
    assert response.content == "mapped reply" and response.model == "chat-small"
    chunks = [c async for c in provider.stream(request)]
    assert "".join(c.delta for c in chunks) == "mapped reply" and chunks[-1].finish_reason == "stop"


def test_loading_litellm_leaves_the_hosts_logging_alone() -> None:
    """litellm's import sets the ``httpx`` logger to WARNING; the plugin puts the host's level back
    (checked in a fresh interpreter, where litellm is not imported yet)."""
    import subprocess
    import sys

    script = ("import logging; logging.getLogger('httpx').setLevel(logging.INFO)\n"
              "from vendo_ai_litellm.provider import litellm_module; litellm_module()\n"
              "print(logging.getLogger('httpx').level)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(logging.INFO)
