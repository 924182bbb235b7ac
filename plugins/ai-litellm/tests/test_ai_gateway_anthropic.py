"""A non-OpenAI vendor through litellm's own code path: Anthropic's Messages API served by a
loopback server (``anthropic_upstream``), reached by litellm's ``anthropic/`` provider, answered
by Vendo in OpenAI's format to the official ``openai`` SDK, on SQLite and PostgreSQL: plain and
streamed replies, tokens metered from Anthropic's usage, the operator's key or the workspace's
own (BYOK) sent as ``x-api-key``, and a key Anthropic rejects answered 401 naming the vendor."""

from __future__ import annotations

from typing import Any, Iterator

import openai
import pytest
from ai_litellm_support import CATALOG, OPERATOR_KEY
from anthropic_upstream import INPUT_TOKENS, REPLY, AnthropicUpstream

HELLO = [{"role": "user", "content": "Say hello"}]
#: The test catalog with Claude on Pro's allow-list.
CLAUDE_CATALOG = CATALOG.replace('ai = { models = ["fast", "smart", "embed-small"], managed = true }',
                                 'ai = { models = ["fast", "smart", "embed-small", "claude"], managed = true }')


@pytest.fixture
def anthropic() -> Iterator[AnthropicUpstream]:
    server = AnthropicUpstream(api_key=OPERATOR_KEY)
    yield server
    server.close()


def _gateway(make_gateway: Any, anthropic: AnthropicUpstream) -> Any:
    assert CLAUDE_CATALOG != CATALOG
    return make_gateway("pro", catalog=CLAUDE_CATALOG, extra_models=(
        {"id": "claude", "model": "anthropic/claude-loopback", "api_base": anthropic.url,
         "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015},))


def test_claude_through_litellm_answers_in_openai_format_and_is_metered(make_gateway, anthropic) -> None:
    gw = _gateway(make_gateway, anthropic)
    client = gw.openai()
    reply = client.chat.completions.create(model="claude", messages=HELLO, max_tokens=64)
    assert reply.choices[0].message.content == "".join(REPLY)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (INPUT_TOKENS, len(REPLY))
    (sent,) = anthropic.received
    assert sent["path"] == "/v1/messages" and sent["headers"]["x-api-key"] == OPERATOR_KEY  # managed AI
    assert sent["body"]["model"] == "claude-loopback" and sent["body"]["max_tokens"] == 64
    assert sent["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]

    chunks = list(client.chat.completions.create(model="claude", messages=HELLO, max_tokens=64, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(REPLY) and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(REPLY)

    (plain, streamed) = gw.ledger(feature="ai_chat")
    for entry in (plain, streamed):
        assert entry.tokens == INPUT_TOKENS + len(REPLY) and entry.details["model"] == "claude"
    assert gw.used("ai_tokens") == 2 * (INPUT_TOKENS + len(REPLY))
    spend = 2 * (INPUT_TOKENS * 3 + len(REPLY) * 15)  # micro-dollars at the route's prices, exactly
    assert gw.used("ai_spend") == spend


def test_the_workspace_key_goes_to_anthropic_and_a_rejected_key_is_a_401_naming_it(make_gateway, anthropic) -> None:
    gw = _gateway(make_gateway, anthropic)
    admin = gw.session_headers(gw.owner, gw.team)
    own = "sk-ant-team-own-key-9876"
    stored = gw.http.post("/api/v1/ai/credentials", json={"provider": "anthropic", "key": own}, headers=admin)
    assert stored.status_code == 201, stored.text
    client = gw.openai()
    with pytest.raises(openai.AuthenticationError) as info:  # the loopback knows only the operator's key
        client.chat.completions.create(model="claude", messages=HELLO, max_tokens=16)
    assert anthropic.received[-1]["headers"]["x-api-key"] == own  # BYOK: the workspace's own key was sent
    error = info.value.response.json()["error"]
    assert error["code"] == "provider_key_rejected" and "anthropic" in error["message"]
    assert own not in info.value.response.text and "9876" not in error["message"]
    assert gw.ledger(feature="ai_chat") == [] and gw.used("ai_chat") == 0  # nothing consumed

    anthropic.api_key = own  # the vendor accepts it now
    reply = client.chat.completions.create(model="claude", messages=HELLO, max_tokens=16)
    assert reply.choices[0].message.content == "".join(REPLY)
    (entry,) = gw.ledger(feature="ai_chat")
    assert entry.details["byok"] is True and entry.cost == 0.0
