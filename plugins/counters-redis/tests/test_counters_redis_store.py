"""The Redis store alone, against a real Redis: the protocol, atomicity, expiry, lost data,
an unreachable server, and how the plugin registers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

import vendo_counters_redis
from vendo import Bucket, CounterStore, CounterStoreUnavailable
from vendo.capabilities import COMPENSATIONS
from vendo_counters_redis import Settings
from vendo_counters_redis.store import SHORT_TTL, RedisCounterStore, mask

from counters_redis_support import CLOSED_URL, PLUGIN, REDIS_URL

MONTH = "usr_1:chat:month:20260101T0000"
MEMBER = "ws_1/usr_a:chat:month:20260101T0000"
LIFETIME = "usr_1:seats:lifetime:19700101T0000"


@pytest.fixture
def store(redis_client):
    store = RedisCounterStore(Settings(url=REDIS_URL, key_prefix="t:"))
    store.overwrite(None, {})  # a fresh store holds no data yet: mark it initialised
    yield store
    store.close()


def session() -> SimpleNamespace:
    """What the store needs of a session: ``info``, where undo actions are registered."""
    return SimpleNamespace(info={})


def test_it_implements_the_protocol(store) -> None:
    assert isinstance(store, CounterStore) and store.name == "redis"


def test_try_add_moves_every_bucket_or_none(store, redis_client) -> None:
    assert store.try_add(None, [Bucket(MONTH, 10), Bucket(MEMBER, 3)], 3) == [3, 3]
    assert store.try_add(None, [Bucket(MONTH, 10), Bucket(MEMBER, 3)], 1) is None  # the member cap
    assert store.read(None, [MONTH, MEMBER]) == [3, 3]
    assert store.try_add(None, [Bucket(MONTH, 10)], 7) == [10]
    assert store.try_add(None, [Bucket(MONTH, 10)], 1) is None
    assert store.try_add(None, [Bucket(MONTH, None)], 50) == [60]  # no limit: unlimited
    assert store.try_add(None, [Bucket("usr_2:chat:month:20260101T0000", 2)], 3) is None  # over on its own
    assert redis_client.get("t:" + MONTH) == "60" and not redis_client.exists("t:usr_2:chat:month:20260101T0000")


def test_add_read_and_overwrite(store, redis_client) -> None:
    assert store.add(None, [Bucket(MONTH, 1)], 5) == [5]  # limits are ignored
    assert store.add(None, [Bucket(MONTH, None)], -7) == [-2]
    assert store.read(None, [MONTH, "unknown"]) == [-2, 0]
    assert store.read(None, []) == []
    store.overwrite(None, {MONTH: 9, LIFETIME: 4, MEMBER: 0})
    assert store.read(None, [MONTH, LIFETIME, MEMBER]) == [9, 4, 0]
    many = {f"usr_{i}:chat:month:20260101T0000": i for i in range(1, 1201)}  # several script calls
    store.overwrite(None, many)
    assert store.read(None, list(many)) == list(many.values())
    assert sorted(redis_client.keys("other:*")) == []  # everything under the prefix


def test_counters_expire_except_lifetime_ones(store, redis_client) -> None:
    store.add(None, [Bucket(MONTH, None), Bucket(LIFETIME, None), Bucket("rl:key:ak_1:second:1767225600", None)], 1)
    assert 100 * 86_400 - 5 <= redis_client.ttl("t:" + MONTH) <= 100 * 86_400
    assert redis_client.ttl("t:" + LIFETIME) == -1
    assert 0 < redis_client.ttl("t:rl:key:ak_1:second:1767225600") <= SHORT_TTL
    short = RedisCounterStore(Settings(url=REDIS_URL, key_prefix="t:", ttl_days=0.5))
    short.overwrite(None, {MONTH: 3, LIFETIME: 3})
    assert 0 < redis_client.ttl("t:" + MONTH) <= 43_200 and redis_client.ttl("t:" + LIFETIME) == -1
    short.close()


def test_moves_register_their_opposite_for_a_rollback(store) -> None:
    own = session()
    store.try_add(own, [Bucket(MONTH, 10), Bucket(MEMBER, 5)], 4)
    store.add(own, [Bucket(MONTH, None)], 2)
    assert store.try_add(own, [Bucket(MONTH, 1)], 1) is None  # refused: nothing to undo
    assert store.read(None, [MONTH, MEMBER]) == [6, 4]
    undo = own.info[COMPENSATIONS]
    assert len(undo) == 2
    for action in reversed(undo):
        action()
    assert store.read(None, [MONTH, MEMBER]) == [0, 0]
    store.overwrite(own, {MONTH: 3})
    store.read(own, [MONTH])
    assert len(own.info[COMPENSATIONS]) == 2  # overwrites and reads are not undone


def test_lost_data_is_refused_until_overwritten(store, redis_client) -> None:
    store.add(None, [Bucket(MONTH, None)], 4)
    redis_client.flushdb()  # Redis restarted without persistence
    for call in (lambda: store.try_add(None, [Bucket(MONTH, 5)], 1), lambda: store.add(None, [Bucket(MONTH, 5)], 1),
                 lambda: store.read(None, [MONTH]), lambda: store.read(None, [])):
        with pytest.raises(CounterStoreUnavailable) as info:
            call()
        assert info.value.details == {"store": "redis", "reason": "lost"} and "lost its counters" in info.value.message
    assert redis_client.dbsize() == 0  # nothing was counted from zero
    store.overwrite(None, {MONTH: 4})
    assert store.try_add(None, [Bucket(MONTH, 5)], 1) == [5]


def test_an_unreachable_server_fails_fast(redis_client) -> None:
    down = RedisCounterStore(Settings(url=CLOSED_URL, down_retry_seconds=30))
    started = time.monotonic()
    for call in (lambda: down.try_add(None, [Bucket(MONTH, 5)], 1), lambda: down.read(None, [MONTH]),
                 lambda: down.overwrite(None, {MONTH: 1})):
        with pytest.raises(CounterStoreUnavailable) as info:
            call()
        assert info.value.details == {"store": "redis", "reason": "unreachable"}
        assert info.value.status_code == 503 and "127.0.0.1:1" in info.value.message
    assert time.monotonic() - started < 2


def test_a_server_that_does_not_answer_in_time_is_unreachable() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections, never answers
    port = listener.getsockname()[1]
    try:
        silent = RedisCounterStore(Settings(url=f"redis://127.0.0.1:{port}/0", socket_timeout=0.2,
                                            socket_connect_timeout=0.2))
        started = time.monotonic()
        with pytest.raises(CounterStoreUnavailable, match="unreachable"):
            silent.add(None, [Bucket(MONTH, None)], 1)
        assert time.monotonic() - started < 2
    finally:
        listener.close()


def test_concurrent_callers_never_overspend(store) -> None:
    accepted = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            result = store.try_add(None, [Bucket(MONTH, 100), Bucket(MEMBER, 100)], 1)
            with lock:
                accepted.append(result is not None)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert accepted.count(True) == 100 and store.read(None, [MONTH, MEMBER]) == [100, 100]


def test_prefixes_keep_installs_apart(store) -> None:
    other = RedisCounterStore(Settings(url=REDIS_URL, key_prefix="other:"))
    other.overwrite(None, {})
    store.add(None, [Bucket(MONTH, None)], 3)
    assert other.read(None, [MONTH]) == [0]
    other.close()


def test_password_is_masked() -> None:
    assert mask("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask("redis://:s3cret@host/0") == "redis://:***@host/0"
    assert mask("redis://host:6379/0") == "redis://host:6379/0"


def test_importing_the_plugin_does_not_import_redis() -> None:
    code = "import sys, vendo_counters_redis; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_registered_always_active_when_chosen(vendo_kernel) -> None:
    plain = vendo_kernel({PLUGIN: vendo_counters_redis})
    assert plain.plugin(PLUGIN).status == "ok"
    assert plain.providers.get("counters").name == "sql"  # installed, not chosen: the built-in store
    stores = {entry["name"]: entry["active"] for entry in plain.providers.summary()["counters"]}
    assert stores == {"sql": True, "redis": False}
    assert isinstance(plain.providers.get("counters", "redis"), RedisCounterStore)
    chosen = vendo_kernel({PLUGIN: vendo_counters_redis}, providers={"counters": "redis"},
                          plugin_settings={PLUGIN: {"url": CLOSED_URL, "key_prefix": "app1:"}})
    store = chosen.providers.get("counters")
    assert isinstance(store, RedisCounterStore) and store.settings.key_prefix == "app1:"


def test_settings_are_validated(vendo_kernel) -> None:
    kernel = vendo_kernel({PLUGIN: vendo_counters_redis}, plugin_settings={PLUGIN: {"ttl_days": 0}})
    info = kernel.plugin(PLUGIN)
    assert info.status == "failed" and "ttl_days" in info.error
