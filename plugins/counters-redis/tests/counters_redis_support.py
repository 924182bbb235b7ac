"""Shared by vendo-counters-redis' tests and fixtures: where Redis is, the test catalog."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("VENDO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: Nothing listens on port 1: a Redis that is down.
CLOSED_URL = "redis://127.0.0.1:1/15"
PLUGIN = "counters-redis"

#: The plan catalog of the tests: ``chat`` fails closed (a metered feature's default), ``notes``
#: fails open; the ``team`` plan pools chat with a per-member cap.
CATALOG = {
    "features": {
        "chat": {"kind": "metered", "period": "month"},
        "notes": {"kind": "metered", "period": "month", "failure_policy": "fail_open"},
        "seats": {"kind": "limit"},
    },
    "plans": {
        "free": {"name": "Free", "default": True, "features": {"chat": 5, "notes": 5, "seats": 2}},
        "team": {"name": "Team", "prices": [{"interval": "month", "currency": "usd", "amount": "10"}],
                 "features": {"chat": {"limit": 100, "per_member": 60}, "notes": 100, "seats": 10}},
    },
}


def redis_unreachable(url: str = REDIS_URL) -> str | None:
    """``None`` when Redis answers at ``url``, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # any network failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


def require_redis() -> None:
    """Skip the test when Redis is unreachable; fail it instead when ``CI`` is set."""
    reason = redis_unreachable()
    if reason is not None:
        message = f"Redis unreachable at {REDIS_URL}: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message + " (Redis runs are mandatory in CI)")
        pytest.skip(message)
