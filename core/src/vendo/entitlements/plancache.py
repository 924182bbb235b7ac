"""The per-process cache of subjects' plan assignments (what ``check`` reads first).

A decision needs the subject's assignment (plan, catalog version, status, trial and grace
ends, add-ons) and, for a subject without one, the newest catalog version. Both change
rarely, on subscription changes, yet were read from the database on every decision. This
cache keeps them in memory with two rules that keep them correct:

- **The writing process sees its own writes at once.** :meth:`Entitlements.assign` notes the
  subject on the session; once that transaction *commits*, the subject's entry is dropped (a
  rolled-back assignment drops nothing and never reaches the cache). Inside the assigning
  transaction the cache is bypassed, so the transaction reads what it wrote.
- **Other processes see it within ``ttl`` seconds** (``[entitlements] plan_cache_ttl``,
  default 1 s; 0 turns the cache off): an entry is used for at most ``ttl`` seconds after it
  was read from the database. A time bound was chosen over a version stamp read on every
  decision because such a read is a database (or Redis) round trip of about the cost of the
  primary-key read it would save.

Only the raw assignment row is cached; whether it is active (trial ended, grace expired) is
decided on every call against the kernel's clock. Counters are never cached.

A read racing with an invalidation cannot put a stale row back: every invalidation bumps a
generation number, and a row read from the database is stored only if the generation did not
move while it was being read.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

#: What :meth:`PlanCache.get` returns when it has nothing fresh (``None`` is a valid entry:
#: "this subject has no assignment").
MISS: Any = object()
#: The key of the newest catalog version number.
NEWEST_CATALOG = "\x00catalog"


class PlanCache:
    """Subjects' assignment rows (or ``None``) and the newest catalog version, each kept for
    at most ``ttl`` seconds (see the module docstring)."""

    def __init__(self, ttl: float, *, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether entries are kept at all (``ttl > 0``)."""
        return self.ttl > 0

    @property
    def generation(self) -> int:
        """Take this before reading from the database and give it to :meth:`put`."""
        return self._generation

    def get(self, key: str) -> Any:
        """The entry of ``key`` if it was read less than ``ttl`` seconds ago, else :data:`MISS`."""
        entry = self._entries.get(key)
        if entry is None or self.clock() - entry[0] >= self.ttl:
            return MISS
        return entry[1]

    def put(self, key: str, value: Any, generation: int) -> None:
        """Keep ``value`` (read from the database after :attr:`generation` was ``generation``),
        unless an invalidation happened meanwhile."""
        if not self.enabled:
            return
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.pop(next(iter(self._entries)))  # the oldest inserted
            self._entries[key] = (self.clock(), value)

    def invalidate(self, keys: Any = None) -> None:
        """Drop the entries of ``keys`` (every entry when ``None``)."""
        with self._lock:
            self._generation += 1
            if keys is None:
                self._entries.clear()
            else:
                for key in keys:
                    self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
