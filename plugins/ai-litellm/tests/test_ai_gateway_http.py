"""Vendo's OpenAI-compatible endpoints with the official ``openai`` SDK as the client, Vendo on
loopback, and a real OpenAI-compatible upstream on loopback reached over the plugin's direct
path (``fast``) or through litellm's HTTP path (``smart``); on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from vendo_ai_litellm.upstream import vector_for

HELLO = [{"role": "user", "content": "hello there Ada"}]


def error_of(exc: Any) -> dict[str, Any]:
    """The OpenAI-shaped error object of an SDK exception."""
    return exc.response.json()["error"]


def test_chat_completion_is_answered_and_metered(make_gateway) -> None:
    gw = make_gateway("pro")
    answer = gw.openai().chat.completions.create(model="fast", messages=HELLO, max_tokens=50)
    assert answer.choices[0].message.content == "Echo: hello there Ada"
    assert answer.choices[0].finish_reason == "stop" and answer.model == "fast"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 4)
    assert gw.upstream.requests[-1].authorization == f"Bearer {gw.operator_key}"  # managed AI: operator key
    assert gw.upstream.requests[-1].body["model"] == "loopback-chat"  # the alias resolved, then litellm's route

    [entry] = gw.ledger(feature="ai_chat")  # Pro's AI meters have no limits: recorded, never held
    assert (entry.kind, entry.amount, entry.tokens) == ("consume", 1, 7)
    assert entry.idempotency_key.startswith("ai_") and entry.idempotency_key.endswith(":ai_chat")
    assert {e.idempotency_key.split(":")[0] for e in gw.ledger()} == {entry.idempotency_key.split(":")[0]}
    with gw.kernel.session() as session:
        from vendo.entitlements.models import Hold

        assert session.query(Hold).count() == 0
    assert entry.cost == pytest.approx(3e-6 + 8e-6)
    assert entry.details["model"] == "chat-small" and entry.details["vendor"] == "openai"
    assert entry.details["byok"] is False and entry.details["latency_ms"] > 0
    assert entry.details["api_key"] and entry.member == gw.owner.id
    assert gw.used("ai_tokens") == 7 and gw.used("ai_spend") == 11


def test_a_model_through_litellm_is_gated_and_metered_the_same(make_gateway) -> None:
    gw = make_gateway("pro")
    client = gw.openai()
    answer = client.chat.completions.create(model="smart", messages=HELLO, max_tokens=50)
    assert answer.choices[0].message.content == "Echo: hello there Ada" and answer.model == "smart"
    assert gw.upstream.requests[-1].body["model"] == "loopback-large"
    stream = client.chat.completions.create(model="smart", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there Ada"
    assert chunks[-1].usage.completion_tokens == 4
    entries = gw.ledger(feature="ai_chat")
    assert [(e.kind, e.tokens, e.details["model"]) for e in entries] == [("consume", 7, "chat-large")] * 2
    assert gw.used("ai_tokens") == 14 and gw.used("ai_spend") == 22
    gw.upstream.set_mode("fail")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="smart", messages=HELLO)
    assert info.value.status_code == 502 and gw.used("ai_tokens") == 14 and len(gw.ledger(feature="ai_chat")) == 2


def test_streaming_in_openai_chunk_format_with_usage(make_gateway) -> None:
    gw = make_gateway("pro")
    client = gw.openai()
    stream = client.chat.completions.create(model="fast", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == client.chat.completions.create(model="fast", messages=HELLO).choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)

    raw = gw.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {gw.team_key}"},
                       json={"model": "fast", "messages": HELLO, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(e[6:]) for e in events[:-1])
    assert [e.kind for e in gw.ledger(feature="ai_chat")] == ["consume"] * 3


def test_embeddings_and_a_feature_named_by_the_integrator(make_gateway) -> None:
    gw = make_gateway("pro")
    client = gw.openai()
    result = client.embeddings.create(model="embed-small", input=["first text", "second"])  # base64 by default
    assert [list(d.embedding) for d in result.data] == [pytest.approx(vector_for("first text")),
                                                          pytest.approx(vector_for("second"))]
    assert result.usage.prompt_tokens == 3
    floats = client.embeddings.create(model="embed-small", input="one", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vector_for("one"))
    assert len(gw.ledger(feature="ai_embeddings")) == 2

    named = gw.openai(default_headers={"X-Vendo-Feature": "semantic_search"})
    for _ in range(5):
        named.embeddings.create(model="embed-small", input="query")
    with pytest.raises(openai.RateLimitError) as info:
        named.embeddings.create(model="embed-small", input="query")
    assert error_of(info.value)["code"] == "WORKSPACE_QUOTA_EXHAUSTED"
    assert error_of(info.value)["type"] == "insufficient_quota"
    assert "retry-after" in info.value.response.headers
    assert len(gw.ledger(feature="semantic_search")) == 5 and len(gw.ledger(feature="ai_embeddings")) == 2


def test_models_follow_the_plan(make_gateway) -> None:
    gw = make_gateway("pro")
    assert {m.id for m in gw.openai().models.list()} == {"chat-small", "chat-large", "embed-small", "fast", "smart"}
    assert {m.id for m in gw.openai(gw.other_key).models.list()} == {"chat-small", "embed-small", "fast"}


def test_bad_input_in_openai_error_shape(make_gateway) -> None:
    gw = make_gateway("pro")
    client = gw.openai()
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert error_of(info.value) == {"message": "the model 'no-such-model' does not exist",
                                    "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    for messages in ([{"role": "wizard", "content": "x"}], [], [{"content": "no role"}], "not a list"):
        with pytest.raises(openai.UnprocessableEntityError) as info:
            client.chat.completions.create(model="fast", messages=messages)
        error = error_of(info.value)
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == "messages"
        assert error["type"] == "invalid_request_error"
    raw = gw.http.post("/v1/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {gw.team_key}"})
    assert raw.status_code == 422 and raw.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="embed-small", messages=HELLO)  # an embedding model
    with pytest.raises(openai.AuthenticationError) as info:
        gw.openai("vk_live_" + "x" * 44).chat.completions.create(model="fast", messages=HELLO)
    assert error_of(info.value)["code"] == "invalid_api_key"
    unknown = gw.openai(default_headers={"X-Vendo-Feature": "no_such_feature"})
    with pytest.raises(openai.NotFoundError) as info:
        unknown.chat.completions.create(model="fast", messages=HELLO)
    assert error_of(info.value)["code"] == "unknown_feature"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        gw.openai(default_headers={"X-Vendo-Feature": "Not A Feature!"}).chat.completions.create(
            model="fast", messages=HELLO)
    assert error_of(info.value)["code"] == "invalid_feature"
    missing = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO})
    assert missing.status_code == 401 and set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert gw.ledger() == []


def test_model_outside_the_plan_is_402_with_the_upgrade_tier(make_gateway) -> None:
    gw = make_gateway("pro")
    with gw.kernel.session() as session:  # the other workspace may use the operator's key... once on pro
        gw.kernel.ai.vault.put(session, gw.other, "openai", "sk-other-own-key-123", actor=gw.outsider.id)
    with pytest.raises(openai.APIStatusError) as info:
        gw.openai(gw.other_key).chat.completions.create(model="smart", messages=HELLO)
    assert info.value.status_code == 402
    error = error_of(info.value)
    assert error["code"] == "TIER_LIMITED" and error["upgrade_tier"] == "pro" and error["type"] == "payment_required"
    assert gw.ledger(gw.other) == []


def test_upstream_failure_and_timeout_are_502_with_nothing_consumed(make_gateway) -> None:
    gw = make_gateway("pro")
    client = gw.openai()
    before = len(gw.upstream.requests)
    gw.upstream.set_mode("fail")
    for call in (lambda: client.chat.completions.create(model="fast", messages=HELLO),
                 lambda: list(client.chat.completions.create(model="fast", messages=HELLO, stream=True)),
                 lambda: client.embeddings.create(model="embed-small", input="x")):
        with pytest.raises(openai.APIStatusError) as info:
            call()
        assert info.value.status_code == 502 and error_of(info.value)["type"] == "api_error"
    gw.upstream.set_mode("timeout", delay=3.0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="fast", messages=HELLO)
    assert info.value.status_code == 502 and error_of(info.value)["code"] == "upstream_timeout"
    assert len(gw.upstream.requests) > before
    assert [e for e in gw.ledger() if e.kind in ("commit", "consume")] == []
    assert gw.used("ai_chat") == gw.used("ai_tokens") == gw.used("ai_spend") == 0


def test_quota_is_429_with_the_reason_code(make_gateway) -> None:
    gw = make_gateway("capped")  # ai_chat = 3 a month
    client = gw.openai()
    for _ in range(3):
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert error_of(info.value)["code"] == "WORKSPACE_QUOTA_EXHAUSTED"
    assert gw.used("ai_chat") == 3
    # Limited meters are held before each call and committed after it.
    assert {(e.feature, e.kind) for e in gw.ledger()} == {("ai_chat", "commit"), ("ai_tokens", "commit"),
                                                          ("ai_spend", "commit")}


def test_a_stream_never_overspends_its_reservation(make_gateway) -> None:
    """Tokens are reserved up-front (prompt + max_tokens); a vendor that streams more than
    reserved is cut with a final error event, and only the reservation is counted."""
    gw = make_gateway("capped")  # ai_tokens = 200 a month
    client = gw.openai()
    estimate = gw.kernel.providers.get("ai", "litellm").count_tokens("chat-small", HELLO)  # 10 (with overhead)
    gw.upstream.set_mode("ignore_max_tokens", long_reply_words=500)
    stream = client.chat.completions.create(model="fast", messages=HELLO, max_tokens=20, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "reserved" in str(info.value)
    assert len("".join(received).split()) == 20
    assert gw.used("ai_tokens") == estimate + 20
    assert gw.upstream.requests[-1].body["max_tokens"] == 20
    [entry] = gw.ledger(feature="ai_chat")
    assert entry.details["cut"] is True and entry.details["completion_tokens"] == 20

    gw.upstream.set_mode("ok")
    with pytest.raises(openai.RateLimitError) as info:  # 30 used: 10 + 180 more would pass 200
        client.chat.completions.create(model="fast", messages=HELLO, max_tokens=180, stream=True)
    assert error_of(info.value)["code"] == "WORKSPACE_QUOTA_EXHAUSTED"
    assert gw.used("ai_tokens") == estimate + 20 and gw.used("ai_chat") == 1  # the refused call left nothing held


def test_workspace_budget_is_a_hard_stop_with_a_warning_at_80_percent(make_gateway) -> None:
    gw = make_gateway("capped")  # ai_spend = 170 micro-dollars a month, ai_chat = 3
    client = gw.openai()
    message = [{"role": "user", "content": " ".join(["w"] * 30)}]
    # Reserved: 37 estimated prompt tokens + 2 x 20 completion = 77; spent: 30 + 2 x 20 = 70.
    client.chat.completions.create(model="fast", messages=message, max_tokens=20)
    assert gw.used("ai_spend") == 70 and gw.events("ai.budget.warning") == []
    client.chat.completions.create(model="fast", messages=message, max_tokens=20)
    assert gw.used("ai_spend") == 140
    [warning] = [e for e in gw.events("ai.budget.warning") if e["feature"] == "ai_spend"]
    assert warning["subject"] == gw.team and warning["limit"] == 170 and warning["used"] == 140
    with pytest.raises(openai.RateLimitError) as info:  # 140 + 77 > 170: refused before the vendor is called
        client.chat.completions.create(model="fast", messages=message, max_tokens=20)
    assert error_of(info.value)["code"] == "WORKSPACE_QUOTA_EXHAUSTED"
    assert gw.used("ai_spend") == 140 and gw.used("ai_chat") == 2 and gw.used("ai_tokens") == 100


def test_api_key_budget(make_gateway) -> None:
    gw = make_gateway("pro")
    key_id = gw.team_key[8:20]
    admin = gw.session_headers(gw.owner, gw.team)
    response = gw.http.put(f"/api/v1/ai/budgets/api-keys/{key_id}", json={"monthly_usd": 0.00004}, headers=admin)
    assert response.status_code == 200 and response.json() == {"api_key_id": key_id, "monthly_usd": 0.00004}
    member = gw.session_headers(gw.member, gw.team)
    assert gw.http.put(f"/api/v1/ai/budgets/api-keys/{key_id}", json={"monthly_usd": 9},
                       headers=member).status_code == 403
    listed = gw.http.get("/api/v1/ai/budgets", headers=member).json()["data"]
    assert [(b["api_key_id"], b["monthly_usd"]) for b in listed] == [(key_id, 0.00004)]
    client = gw.openai()
    # Each call reserves 10 + 2 x 4 = 18 micro-dollars and spends 3 + 2 x 4 = 11.
    for _ in range(3):
        client.chat.completions.create(model="fast", messages=HELLO, max_tokens=4)
    [warning] = gw.events("ai.budget.warning")  # 33 of 40
    assert warning["feature"] == "ai_key_spend" and warning["api_key"] == key_id and warning["limit"] == 40
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fast", messages=HELLO, max_tokens=4)
    assert error_of(info.value)["code"] == "API_KEY_BUDGET_EXHAUSTED"
    other = gw.openai(gw.create_key(gw.owner, gw.team))  # another key of the same workspace is not capped
    other.chat.completions.create(model="fast", messages=HELLO, max_tokens=4)
    assert len(gw.ledger(feature="ai_chat")) == 4
    assert gw.http.delete(f"/api/v1/ai/budgets/api-keys/{key_id}", headers=admin).status_code == 204
    client.chat.completions.create(model="fast", messages=HELLO, max_tokens=4)


def test_byok_key_is_used_instead_of_the_operator_key(make_gateway) -> None:
    gw = make_gateway("pro")
    admin = gw.session_headers(gw.owner, gw.team)
    stored = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": "sk-team-own-key-4242"},
                          headers=admin)
    assert stored.status_code == 201
    client = gw.openai()
    client.chat.completions.create(model="fast", messages=HELLO)
    assert gw.upstream.requests[-1].authorization == "Bearer sk-team-own-key-4242"
    list(client.chat.completions.create(model="fast", messages=HELLO, stream=True))
    assert gw.upstream.requests[-1].authorization == "Bearer sk-team-own-key-4242"
    client.embeddings.create(model="embed-small", input="x")
    assert gw.upstream.requests[-1].authorization == "Bearer sk-team-own-key-4242"
    entries = gw.ledger(feature="ai_chat")
    assert [e.details["byok"] for e in entries] == [True, True] and [e.cost for e in entries] == [0.0, 0.0]
    assert entries[0].details["vendor_cost"] > 0
    assert gw.used("ai_tokens") == 0 and gw.used("ai_spend") == 0  # BYOK spends the workspace's own money

    gw.upstream.set_mode("unauthorized")
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="fast", messages=HELLO)
    error = error_of(info.value)
    assert error["code"] == "provider_key_rejected" and "openai" in error["message"]
    assert "sk-team-own-key-4242" not in info.value.response.text and "4242" not in error["message"]
    assert len(gw.ledger(feature="ai_chat")) == 2


def test_a_workspace_key_is_never_usable_by_another_workspace(make_gateway) -> None:
    gw = make_gateway("pro")
    with gw.kernel.session() as session:
        gw.kernel.ai.vault.put(session, gw.team, "openai", "sk-team-secret-9999", actor=gw.owner.id)
    before = len(gw.upstream.requests)
    with pytest.raises(openai.APIStatusError) as info:  # free plan, no key of its own, no managed AI
        gw.openai(gw.other_key).chat.completions.create(model="fast", messages=HELLO)
    assert info.value.status_code == 402 and error_of(info.value)["code"] == "TIER_LIMITED"
    assert error_of(info.value)["upgrade_tier"] == "capped"  # the cheapest plan with managed AI for this model
    assert len(gw.upstream.requests) == before
    with gw.kernel.session() as session:
        gw.kernel.ai.vault.put(session, gw.other, "openai", "sk-other-secret-1111", actor=gw.outsider.id)
    gw.openai(gw.other_key).chat.completions.create(model="fast", messages=HELLO)
    assert gw.upstream.requests[-1].authorization == "Bearer sk-other-secret-1111"
    gw.openai().chat.completions.create(model="fast", messages=HELLO)
    assert gw.upstream.requests[-1].authorization == "Bearer sk-team-secret-9999"
    # The other workspace's key cannot act on the team, even naming it.
    spoof = gw.http.get("/api/v1/ai/credentials", headers={"Authorization": f"Bearer {gw.other_key}",
                                                           "X-Vendo-Workspace": gw.team})
    assert [c["provider"] for c in spoof.json()["data"]] == ["openai"]
    assert spoof.json()["data"][0]["fingerprint"].startswith("\u20261111")
    outsider = gw.http.get("/api/v1/ai/credentials", headers=gw.session_headers(gw.outsider, gw.team))
    assert outsider.status_code == 404


async def test_in_process_api_gates_and_meters(make_gateway) -> None:
    from vendo import ChatRequest
    from vendo.ai import AIRefused

    gw = make_gateway("capped")
    request = ChatRequest(model="fast", messages=({"role": "user", "content": "in process"},), max_tokens=10)
    answer = await gw.kernel.ai.chat(gw.team, request, feature="ai_chat")
    assert answer.content == "Echo: in process" and answer.model == "fast"
    chunks = [c async for c in await gw.kernel.ai.stream(gw.team, request)]
    assert "".join(c.delta for c in chunks) == answer.content and chunks[-1].usage.completion_tokens == 3
    vectors = await gw.kernel.ai.embed(gw.team, "embed-small", ["a b"])
    assert vectors.vectors[0] == pytest.approx(tuple(vector_for("a b")))
    assert [m.id for m in await gw.kernel.ai.models(gw.team)] == ["chat-small", "embed-small", "fast"]
    await gw.kernel.ai.chat(gw.team, request)
    with pytest.raises(AIRefused) as info:
        await gw.kernel.ai.chat(gw.team, request)
    assert info.value.code == "WORKSPACE_QUOTA_EXHAUSTED" and info.value.status_code == 429
    assert gw.used("ai_chat") == 3


def test_signed_in_members_pay_from_the_named_workspace_and_viewers_cannot(make_gateway) -> None:
    gw = make_gateway("pro")
    with gw.kernel.session() as session:
        viewer = gw.kernel.identity.create_user(session, "viewer@example.com")
        _invitation, token = gw.kernel.identity.invite(session, gw.owner.id, gw.team, viewer.email, "VIEWER")
        gw.kernel.identity.accept_invitation(session, viewer.id, token)
    member = gw.session_headers(gw.member, gw.team)
    answer = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO}, headers=member)
    assert answer.status_code == 200, answer.text
    [entry] = gw.ledger(feature="ai_chat")
    assert entry.member == gw.member.id and entry.details["api_key"] is None
    refused = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO},
                           headers=gw.session_headers(viewer, gw.team))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
    assert refused.json()["error"]["type"] == "permission_error"
    stranger = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO},
                            headers=gw.session_headers(gw.outsider, gw.team))
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "subject_not_found"
    assert len(gw.ledger(feature="ai_chat")) == 1


async def test_concurrent_calls_never_overspend(make_gateway) -> None:
    """Eight calls at once on a quota of three: exactly three answered, the holds of the
    others never counted."""
    import asyncio

    from openai import AsyncOpenAI

    gw = make_gateway("capped")  # ai_chat = 3
    client = AsyncOpenAI(base_url=f"{gw.server.url}/v1", api_key=gw.team_key, max_retries=0)

    async def call() -> str:
        try:
            await client.chat.completions.create(model="fast", messages=HELLO, max_tokens=5)
            return "ok"
        except openai.RateLimitError as exc:
            return error_of(exc)["code"]

    outcomes = await asyncio.gather(*(call() for _ in range(8)))
    await client.close()
    assert sorted(outcomes) == ["WORKSPACE_QUOTA_EXHAUSTED"] * 5 + ["ok"] * 3
    assert gw.used("ai_chat") == 3 and len(gw.ledger(feature="ai_chat")) == 3
    assert gw.used("ai_tokens") == sum(e.tokens for e in gw.ledger(feature="ai_chat"))


async def test_an_abandoned_in_process_stream_counts_what_was_produced(make_gateway) -> None:
    from vendo import ChatRequest

    gw = make_gateway("pro")
    request = ChatRequest(model="fast", messages=({"role": "user", "content": "one two three four five"},),
                          max_tokens=50)
    stream = await gw.kernel.ai.stream(gw.team, request)
    first = await stream.__anext__()
    assert first.delta == "Echo:"
    await stream.aclose()
    [entry] = gw.ledger(feature="ai_chat")
    assert entry.details["abandoned"] is True and entry.details["completion_tokens"] == 1
    assert gw.used("ai_tokens") == entry.tokens  # of the 50 completion tokens reserved, one is kept


def test_an_api_key_pays_only_while_its_creator_may_use_metered_features(make_gateway) -> None:
    """The membership behind an API key is checked inside the admission write: a creator
    demoted to VIEWER gets 403 with nothing held or recorded, one removed gets 401."""
    gw = make_gateway("pro")
    with gw.kernel.session() as session:
        gw.kernel.identity.change_role(session, gw.owner.id, gw.team, gw.member.id, "ADMIN")
    key = gw.create_key(gw.member, gw.team)
    headers = {"Authorization": f"Bearer {key}"}
    answer = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO}, headers=headers)
    assert answer.status_code == 200, answer.text
    [entry] = gw.ledger(feature="ai_chat")
    assert entry.member == gw.member.id and entry.details["api_key"]

    with gw.kernel.session() as session:
        gw.kernel.identity.change_role(session, gw.owner.id, gw.team, gw.member.id, "VIEWER")
    refused = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO}, headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
    assert len(gw.ledger(feature="ai_chat")) == 1 and gw.used("ai_chat") == 1

    with gw.kernel.session() as session:
        gw.kernel.identity.remove_member(session, gw.owner.id, gw.team, gw.member.id)
    gone = gw.http.post("/v1/chat/completions", json={"model": "fast", "messages": HELLO}, headers=headers)
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_api_key"
    assert len(gw.ledger(feature="ai_chat")) == 1 and gw.used("ai_chat") == 1
