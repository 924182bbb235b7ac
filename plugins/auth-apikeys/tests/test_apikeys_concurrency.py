"""Concurrent rotations and revocations of one key (threads, each with its own transaction):
one rotation wins and the other writes nothing; a revocation is recorded once."""

from __future__ import annotations

import threading
from typing import Any, Callable

import sqlalchemy as sa

from vendo import Conflict, Principal


def race(count: int, action: Callable[[], Any]) -> list[Any]:
    """Run ``action`` in ``count`` threads released together; results or exceptions, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action()
        except Exception as exc:  # collected and asserted on by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def admin_principal(world: Any) -> Principal:
    return Principal(subject=world.admin.id, scopes=frozenset({"*"}), method="session:test")


def test_concurrent_rotations_of_one_key_leave_one_successor(world) -> None:
    w = world
    created = w.create_key()
    service = w.kernel.providers.get("auth", "api_key").service
    principal = admin_principal(w)

    def rotate() -> str:
        with w.kernel.session() as session:
            new, _key, _old = service.rotate(session, principal, w.team, created["id"], grace_seconds=60)
            return new.id

    results = race(4, rotate)
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 3, results
    assert {e.code for e in losers} == {"api_key_already_rotated"}
    with w.kernel.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, replaced_by FROM auth_apikeys_keys")).all()
    assert sorted(rows) == sorted([(created["id"], winners[0]), (winners[0], None)])
    assert len(w.kernel.audit.query(w.team, action="api_key.rotated")) == 1


def test_concurrent_revocations_are_recorded_once(world) -> None:
    w = world
    created = w.create_key()
    service = w.kernel.providers.get("auth", "api_key").service
    principal = admin_principal(w)

    def revoke() -> Any:
        with w.kernel.session() as session:
            return service.revoke(session, principal, w.team, created["id"]).revoked_at

    results = race(4, revoke)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(set(results)) == 1 and results[0] is not None
    assert len(w.kernel.audit.query(w.team, action="api_key.revoked")) == 1
    assert w.client.get("/api/v1/me", headers=w.bearer(created["key"])).status_code == 401
