"""The AI service's group commit (:class:`vendo.ai.writer.MeterWriter`): concurrent calls share
transactions, yet each call's refusal, failure or cancellation stays its own; on SQLite and
PostgreSQL, against the loopback upstream."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from vendo import ChatRequest, UpstreamError
from vendo.ai import AIRefused

REQUEST = ChatRequest(model="fast", messages=({"role": "user", "content": "hello there Ada"},), max_tokens=5)


def held(gw) -> int:
    """Holds still held by the team."""
    from vendo.entitlements.models import Hold

    with gw.kernel.session() as session:
        return len(session.scalars(select(Hold.id).where(Hold.subject == gw.team, Hold.status == "held")).all())


async def test_concurrent_calls_share_transactions_and_refusals_stay_their_own(make_gateway) -> None:
    gw = make_gateway("capped")  # ai_chat = 3 a month
    writer = gw.kernel.ai._writer

    async def call() -> str:
        try:
            await gw.kernel.ai.chat(gw.team, REQUEST)
            return "ok"
        except AIRefused as exc:
            return exc.code

    outcomes = await asyncio.gather(*(call() for _ in range(12)))
    assert sorted(outcomes) == ["WORKSPACE_QUOTA_EXHAUSTED"] * 9 + ["ok"] * 3
    assert writer.batches < writer.writes  # admissions (and settlements) were grouped
    assert gw.used("ai_chat") == 3 and len(gw.ledger(feature="ai_chat")) == 3
    assert gw.used("ai_tokens") == sum(entry.tokens for entry in gw.ledger(feature="ai_chat"))
    assert held(gw) == 0


async def test_a_vendor_failure_in_a_batch_releases_only_that_calls_holds(make_gateway) -> None:
    """Calls admitted together: those answered are committed, those whose vendor failed are
    released; the ledger has one entry per answered call, exactly."""
    gw = make_gateway("pro")
    await gw.kernel.ai.chat(gw.team, REQUEST)
    gw.upstream.set_mode("fail")
    failed = await asyncio.gather(*(gw.kernel.ai.chat(gw.team, REQUEST) for _ in range(6)), return_exceptions=True)
    assert all(isinstance(outcome, UpstreamError) for outcome in failed)
    gw.upstream.set_mode("ok")
    answered = await asyncio.gather(*(gw.kernel.ai.chat(gw.team, REQUEST) for _ in range(6)))
    assert all(answer.content == "Echo: hello there Ada" for answer in answered)
    assert len(gw.ledger(feature="ai_chat")) == 7 and gw.used("ai_chat") == 7
    assert held(gw) == 0


async def test_a_call_cancelled_during_admission_gives_its_holds_back(make_gateway) -> None:
    gw = make_gateway("capped")  # limited meters: the admission holds them in a write
    writer = gw.kernel.ai._writer
    await gw.kernel.ai.chat(gw.team, REQUEST)  # routes and plan cached: the admission write is the first wait
    task = asyncio.ensure_future(gw.kernel.ai.chat(gw.team, REQUEST))
    for _ in range(100):
        await asyncio.sleep(0)
        if any(queue.items or queue.draining for queue in writer._queues.values()):
            break
    else:
        pytest.fail("the admission was never queued")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the orphaned admission is released once its batch committed
        if held(gw) == 0:
            break
        await asyncio.sleep(0.02)
    assert held(gw) == 0
    assert gw.used("ai_chat") == 1 and len(gw.ledger(feature="ai_chat")) == 1


async def test_a_call_on_meters_without_limits_is_admitted_without_a_write(make_gateway) -> None:
    """Plan and workspace cached, nothing to hold: the admission writes nothing; a change to the
    workspace's vault, key budget or the member's role is seen by the next call at once."""
    gw = make_gateway("pro")
    writer = gw.kernel.ai._writer
    await gw.kernel.ai.chat(gw.team, REQUEST)  # caches the plan and the workspace row
    writes = writer.writes
    await gw.kernel.ai.chat(gw.team, REQUEST)
    assert writer.writes == writes + 1  # the settlement only
    assert gw.used("ai_chat") == 2 and len(gw.ledger(feature="ai_chat")) == 2

    with gw.kernel.session() as session:  # BYOK: the workspace's own key is used from the next call
        gw.kernel.ai.vault.put(session, gw.team, "openai", "sk-team-own-key-0001", actor=gw.owner.id)
    await gw.kernel.ai.chat(gw.team, REQUEST)
    assert gw.upstream.requests[-1].authorization == "Bearer sk-team-own-key-0001"
    with gw.kernel.session() as session:
        gw.kernel.ai.vault.delete(session, gw.team, "openai", actor=gw.owner.id)
    await gw.kernel.ai.chat(gw.team, REQUEST)
    assert gw.upstream.requests[-1].authorization == f"Bearer {gw.operator_key}"
