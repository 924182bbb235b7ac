"""The Redis counter store: one Lua script per operation, atomic across buckets and processes.

Redis runs each script alone, so ``try_add`` reads every bucket, checks
``value + amount <= limit`` for each and only then increments them all: two callers, in any
number of processes or machines, can never both take the last unit, and a pooled workspace
quota and a member's cap move together or not at all.

Data loss: the store keeps a marker key, written by :meth:`RedisCounterStore.overwrite`
(``vendo usage rebuild``). Every script checks it first; without it (Redis restarted without
persistence, or was flushed) the store refuses to count, raising
:class:`vendo.CounterStoreUnavailable` with ``reason = "lost"`` instead of answering from
empty counters, which would silently give every quota away. The server rebuilds the counters
from the ledger within seconds (``kernel.entitlements.maintain``).

``redis`` is imported when the store first talks to the server, never when the plugin loads.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from vendo import Bucket, CounterStoreUnavailable, counter_period, on_rollback

#: Seconds in a window shorter than a day: such counters expire soon after their window.
_SHORT_PERIODS = {"second": 1, "minute": 60, "hour": 3600}
#: How long counters of windows shorter than a day live after their last write.
SHORT_TTL = 2 * 3600

# KEYS[1]: the marker; KEYS[2..n+1]: the counters.
# ARGV[1]: the amount; ARGV[2i]: counter i's limit ('' for none); ARGV[2i+1]: its TTL (0: none).
# Returns {-1} when the data is lost, {0} when refused, else {1, value1, ..., valuen}.
TRY_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local amount = tonumber(ARGV[1])
local n = #KEYS - 1
for i = 1, n do
  local limit = ARGV[2 * i]
  if limit ~= '' then
    local value = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if value + amount > tonumber(limit) then return {0} end
  end
end
local out = {1}
for i = 1, n do
  out[i + 1] = redis.call('INCRBY', KEYS[i + 1], amount)
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i + 1], ttl) end
end
return out
"""

# Same KEYS and ARGV as TRY_ADD (limits ignored): increments unconditionally.
ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local amount = tonumber(ARGV[1])
local out = {1}
for i = 1, #KEYS - 1 do
  out[i + 1] = redis.call('INCRBY', KEYS[i + 1], amount)
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i + 1], ttl) end
end
return out
"""

# KEYS[1]: the marker; KEYS[2..]: counters. Returns {-1} when lost, else {1, values...}.
READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local out = {1}
if #KEYS == 1 then return out end
local values = redis.call('MGET', unpack(KEYS, 2))
for i = 1, #KEYS - 1 do out[i + 1] = tonumber(values[i] or '0') end
return out
"""

# KEYS[1]: the marker; KEYS[2..n+1]: counters. ARGV[2i-1]: counter i's value; ARGV[2i]: its TTL;
# ARGV[2n+1]: '1' to set the marker (the last chunk of a rebuild) with the value ARGV[2n+2].
OVERWRITE = """
local n = #KEYS - 1
for i = 1, n do
  local key, value, ttl = KEYS[i + 1], ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if value == '0' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, value)
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  end
end
if ARGV[2 * n + 1] == '1' then redis.call('SET', KEYS[1], ARGV[2 * n + 2]) end
return {1}
"""

SCRIPTS = {"try_add": TRY_ADD, "add": ADD, "read": READ, "overwrite": OVERWRITE}

#: Counters per script call of ``read`` and ``overwrite``.
CHUNK = 500


def mask(url: str) -> str:
    """A Redis URL with its password hidden."""
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)


class RedisCounterStore:
    """Counters of the ``counters`` family in Redis (see the module docstring).

    :param settings: the plugin's settings (URL, key prefix, TTL, timeouts).
    """

    name = "redis"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.marker = f"{settings.key_prefix}!initialized"
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._errors: tuple[type[BaseException], ...] = ()
        self._lock = threading.Lock()
        self._down_until = 0.0

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> None:
        """Create the client (a thread-safe connection pool, reset after a fork) and register
        the scripts (EVALSHA, loaded again by the client if Redis forgot them)."""
        with self._lock:
            if self._client is not None:
                return
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            settings = self.settings
            password = settings.password.get_secret_value() if settings.password is not None else None
            client = redis.Redis.from_url(
                settings.url,
                password=password,
                socket_timeout=settings.socket_timeout,
                socket_connect_timeout=settings.socket_connect_timeout,
                max_connections=settings.max_connections,
                # Never retry: an increment whose reply was lost may have been applied.
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
            )
            self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
            self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                            redis.exceptions.ReadOnlyError)
            self._client = client

    def close(self) -> None:
        """Close the connection pool (the next operation opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _run(self, script: str, keys: list[str], args: list[Any]) -> list[int]:
        """Run one script on ``keys`` (prefixed here) after the marker; return its reply.

        :raises CounterStoreUnavailable: unreachable (``reason="unreachable"``; for
            ``down_retry_seconds`` later calls fail at once) or lost (``reason="lost"``).
        """
        if time.monotonic() < self._down_until:
            raise self._unreachable("it failed less than a moment ago")
        if self._client is None:
            self._connect()
        prefix = self.settings.key_prefix
        try:
            reply = self._scripts[script](keys=[self.marker, *(prefix + key for key in keys)], args=args)
        except self._errors as exc:
            self._down_until = time.monotonic() + self.settings.down_retry_seconds
            raise self._unreachable(f"{type(exc).__name__}: {exc}") from None
        if reply[0] == -1:
            raise CounterStoreUnavailable(
                f"the Redis counter store at {mask(self.settings.url)} has lost its counters (restarted without "
                "persistence, or flushed): they are being rebuilt from the ledger (`vendo usage rebuild`)",
                details={"store": self.name, "reason": "lost"})
        return reply

    def _unreachable(self, why: str) -> CounterStoreUnavailable:
        return CounterStoreUnavailable(f"the Redis counter store at {mask(self.settings.url)} is unreachable ({why})",
                                       details={"store": self.name, "reason": "unreachable"})

    # -- the CounterStore protocol ------------------------------------------------------------------

    def ttl(self, key: str) -> int:
        """Seconds a counter lives after its last write (0: forever): ``lifetime`` counters
        forever, windows shorter than a day :data:`SHORT_TTL`, others ``ttl_days``."""
        period = counter_period(key)
        if period == "lifetime":
            return 0
        if period in _SHORT_PERIODS:
            return SHORT_TTL
        return int(self.settings.ttl_days * 86_400)

    def _args(self, buckets: list[Bucket], amount: int) -> list[Any]:
        args: list[Any] = [amount]
        for bucket in buckets:
            args += ["" if bucket.limit is None else bucket.limit, self.ttl(bucket.key)]
        return args

    def try_add(self, session: Any, buckets: list[Bucket], amount: int) -> list[int] | None:
        """Add ``amount`` to every bucket if each stays within its limit (one script); the
        opposite move is registered on ``session`` for a rollback."""
        reply = self._run("try_add", [b.key for b in buckets], self._args(buckets, amount))
        if reply[0] == 0:
            return None
        self._undo_on_rollback(session, buckets, amount)
        return [int(value) for value in reply[1:]]

    def add(self, session: Any, buckets: list[Bucket], amount: int) -> list[int]:
        """Add ``amount`` (possibly negative) to every bucket (one script); the opposite move
        is registered on ``session`` for a rollback."""
        reply = self._run("add", [b.key for b in buckets], self._args(buckets, amount))
        self._undo_on_rollback(session, buckets, amount)
        return [int(value) for value in reply[1:]]

    def read(self, session: Any, keys: list[str]) -> list[int]:
        """Current values (MGET in a script that first checks the data is not lost)."""
        values: list[int] = []
        for start in range(0, max(len(keys), 1), CHUNK):
            chunk = keys[start:start + CHUNK]
            values += [int(value) for value in self._run("read", chunk, [])[1:]]
        return values

    def overwrite(self, session: Any, values: dict[str, int]) -> None:
        """Set counters to the given values (0 deletes), then mark the store as holding data."""
        items = list(values.items())
        chunks = [items[start:start + CHUNK] for start in range(0, len(items), CHUNK)] or [[]]
        for index, chunk in enumerate(chunks):
            args: list[Any] = []
            for key, value in chunk:
                args += [int(value), self.ttl(key)]
            last = index == len(chunks) - 1
            args += ["1" if last else "0", str(int(time.time()))]
            self._run_overwrite([key for key, _ in chunk], args)

    def _run_overwrite(self, keys: list[str], args: list[Any]) -> None:
        # The overwrite script must run while the marker is absent: it is what restores it.
        if self._client is None:
            self._connect()
        prefix = self.settings.key_prefix
        try:
            self._scripts["overwrite"](keys=[self.marker, *(prefix + key for key in keys)], args=args)
        except self._errors as exc:
            self._down_until = time.monotonic() + self.settings.down_retry_seconds
            raise self._unreachable(f"{type(exc).__name__}: {exc}") from None
        self._down_until = 0.0

    def _undo_on_rollback(self, session: Any, buckets: list[Bucket], amount: int) -> None:
        unlimited = [Bucket(bucket.key, None) for bucket in buckets]

        def undo() -> None:
            self._run("add", [b.key for b in unlimited], self._args(unlimited, -amount))

        on_rollback(session, undo)
