"""vendo-counters-redis: usage counters and rate-limit windows in Redis.

Choose it in ``vendo.toml``::

    [providers]
    counters = "redis"

    [counters-redis]
    url = "redis://127.0.0.1:6379/0"

The store (:class:`~vendo_counters_redis.store.RedisCounterStore`) is always registered; it is
used once chosen. Without a choice the kernel's built-in ``sql`` store stays the default (the
kernel's rule for single-provider families). The store connects on first use only, and start-up
maintenance runs only when it is the chosen store.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, SecretStr

from vendo import CounterStoreUnavailable, PluginSettings, hookimpl

vendo_api = ">=1.0,<2"

log = logging.getLogger("vendo.counters_redis")

NAME = "redis"


class Settings(PluginSettings):
    """``[counters-redis]`` in vendo.toml, or ``VENDO_COUNTERS_REDIS__<FIELD>``."""

    url: str = Field("redis://127.0.0.1:6379/0", description="The Redis server and database number.")
    password: SecretStr | None = Field(None, description="Password (AUTH), if not in the URL.")
    key_prefix: str = Field("vendo:", min_length=1, description="Prefix of every key (several Vendos, one Redis).")
    ttl_days: float = Field(100, gt=0, description="A period counter expires this long after its last write; "
                                                   "lifetime counters never expire.")
    socket_timeout: float = Field(1.0, gt=0, description="Seconds to wait for a reply before the store counts as "
                                                         "unreachable.")
    socket_connect_timeout: float = Field(1.0, gt=0, description="Seconds to wait for a connection.")
    down_retry_seconds: float = Field(1.0, ge=0, description="After a connection failure, fail at once for this "
                                                             "long instead of waiting on every call.")
    max_connections: int = Field(64, gt=0, description="Connection pool size per process.")


@hookimpl
def vendo_settings_model() -> type[Settings]:
    """Declare ``[counters-redis]``."""
    return Settings


def _chosen(kernel: Any) -> bool:
    choice = kernel.settings.providers.get("counters")
    return choice == NAME or (isinstance(choice, list) and NAME in choice)


@hookimpl
def vendo_register_counter_stores(register: Any, kernel: Any, settings: Settings) -> None:
    """The ``redis`` counter store (active with ``[providers] counters = "redis"``)."""
    from vendo_counters_redis.store import RedisCounterStore

    register(NAME, RedisCounterStore(settings))


@hookimpl
def vendo_startup(kernel: Any) -> None:
    """Restore the counters of a Redis that holds none yet (a new server, or one restarted
    without persistence) from the ledger, and apply the usage journalled while it was away.
    An unreachable Redis does not stop start-up: each feature's failure policy applies until
    it is back, and the server retries every few seconds."""
    if not _chosen(kernel):
        return
    try:
        kernel.entitlements.maintain()
    except CounterStoreUnavailable as exc:
        log.warning("%s", exc.message)


@hookimpl
def vendo_shutdown(kernel: Any) -> None:
    """Close the store's connection pool."""
    from vendo_counters_redis.store import RedisCounterStore

    for registration in kernel.providers.registered("counters"):
        if isinstance(registration.provider, RedisCounterStore):
            registration.provider.close()
