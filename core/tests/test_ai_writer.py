"""The AI service's group commit (:class:`vendo.ai.writer.MeterWriter`) for writes without a
savepoint: a clean refusal stays its own inside a shared transaction, and a write that fails
after writing (:class:`Unclean`) makes the batch run again write by write, rolled back alone.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from vendo.ai.writer import MeterWriter, Unclean
from vendo.capabilities import Bucket
from vendo.errors import Conflict


def _value(kernel, key: str) -> int:
    with kernel.session() as session:
        return kernel.providers.get("counters").read(session, [key])[0]


async def test_writes_without_savepoints_share_a_transaction_and_failures_stay_their_own(migrated_kernel) -> None:
    kernel = migrated_kernel()
    kernel.providers.configure({})
    store = kernel.providers.get("counters")
    writer = MeterWriter(kernel)

    def add(key: str, amount: int):
        def work(session):
            return store.add(session, [Bucket(key, None)], amount)[0]
        return work

    def refuse(session):  # refuses before writing: nothing to undo
        raise Conflict("refused", code="refused")

    def dirty(session):  # fails after writing
        store.add(session, [Bucket("t:dirty", None)], 5)
        raise Unclean(Conflict("failed late", code="late"))

    results = await asyncio.gather(
        writer.run(add("t:a", 1), savepoint=False), writer.run(refuse, savepoint=False),
        writer.run(add("t:a", 2), savepoint=False), writer.run(add("t:b", 7)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3 and results[3] == 7
    assert isinstance(results[1], Conflict) and results[1].code == "refused"
    assert writer.batches < writer.writes  # they shared transactions

    results = await asyncio.gather(
        writer.run(add("t:a", 10), savepoint=False), writer.run(dirty, savepoint=False),
        writer.run(add("t:b", 1), savepoint=False), return_exceptions=True)
    assert isinstance(results[1], Conflict) and results[1].code == "late"  # the error itself, unwrapped
    assert _value(kernel, "t:a") == 13 and _value(kernel, "t:b") == 8  # the others ran again alone, once
    assert _value(kernel, "t:dirty") == 0  # the failed write rolled back


def test_unclean_carries_its_error() -> None:
    error = Conflict("x", code="x")
    assert Unclean(error).error is error
    with pytest.raises(Unclean):
        raise Unclean(error)
