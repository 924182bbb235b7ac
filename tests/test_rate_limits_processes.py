"""Rate limits hold across processes: several OS processes sharing one counter store (the SQL
store on PostgreSQL, or Redis through vendo-counters-redis) admit exactly the limit in total,
not the limit per process.

Each worker builds its own kernel on the shared database with the same frozen instant,
waits at a barrier (a line on its stdin) so that all of them hit at once, and reports how
many hits were allowed. The limits are seed 002's Free plan (examples/catalogs/gilo.toml):
60 a minute and 1000 a day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from support import vendo_env
from vendo import Kernel, load_settings
from vendo.db import migrations
from vendo.entitlements.catalog import load_catalog

REDIS_URL = os.environ.get("VENDO_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")

CATALOG = Path(__file__).resolve().parents[1] / "examples" / "catalogs" / "gilo.toml"
WORKERS = 4
HITS = 30  # each: 120 attempts in all against a limit of 60 a minute

WORKER = """
import json
import sys
from datetime import datetime

from vendo import Kernel, load_settings

url, data_dir, moment, hits, subject, store, redis_url = sys.argv[1:8]
now = datetime.fromisoformat(moment)
plugins, providers, plugin_settings = {}, {}, {}
if store == "redis":
    import vendo_counters_redis

    plugins = {"counters-redis": vendo_counters_redis}
    providers = {"counters": "redis"}
    plugin_settings = {"counters-redis": {"url": redis_url, "key_prefix": "rlp:"}}
kernel = Kernel(load_settings(overrides={"database_url": url, "data_dir": data_dir, "providers": providers,
                                         "plugins": {"autoload": False}}, plugin_settings=plugin_settings),
                plugins=plugins, clock=lambda: now)
kernel.load()
kernel.providers.configure(kernel.settings.providers)
kernel.rate_limits.peek(subject)  # connected, catalog read: ready to hit
print("ready", flush=True)
sys.stdin.readline()
allowed = sum(kernel.rate_limits.hit(subject).allowed for _ in range(int(hits)))
print(json.dumps({"allowed": allowed, "refused": int(hits) - allowed}), flush=True)
kernel.close()
"""


def run_round(script: Path, url: str, data_dir: Path, moment: datetime, subject: str,
              store: str) -> list[dict[str, int]]:
    """Start the workers, release them together, return what each one reports."""
    workers = [subprocess.Popen([sys.executable, str(script), url, str(data_dir), moment.isoformat(), str(HITS),
                                 subject, store, REDIS_URL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=vendo_env())
               for _ in range(WORKERS)]
    try:
        for worker in workers:
            line = worker.stdout.readline()
            assert line.strip() == "ready", f"worker did not start: {line!r} {worker.stderr.read()}"
        for worker in workers:  # every worker is connected and waiting: release them together
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _redis_ready() -> None:
    """Empty the test database of Redis; skip (fail in CI) when Redis is unreachable."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.flushdb()
        client.close()
    except Exception as exc:  # any network failure means "not reachable"
        message = f"Redis unreachable at {REDIS_URL}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (Redis runs are mandatory in CI)")
        pytest.skip(message)


@pytest.mark.parametrize("store", ["sql", "redis"])
def test_a_limit_of_60_a_minute_admits_60_in_total_across_processes(vendo_postgres_url: str, tmp_path: Path,
                                                                     store: str) -> None:
    data_dir = tmp_path / "data"
    plugins, providers, plugin_settings = {}, {}, {}
    if store == "redis":
        _redis_ready()
        import vendo_counters_redis

        plugins = {"counters-redis": vendo_counters_redis}
        providers = {"counters": "redis"}
        plugin_settings = {"counters-redis": {"url": REDIS_URL, "key_prefix": "rlp:"}}
    kernel = Kernel(load_settings(overrides={"database_url": vendo_postgres_url, "data_dir": str(data_dir),
                                             "providers": providers, "plugins": {"autoload": False}},
                                  plugin_settings=plugin_settings), plugins=plugins)
    try:
        kernel.load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        kernel.providers.configure(kernel.settings.providers)
        kernel.entitlements.load_catalog(load_catalog(CATALOG))
        kernel.entitlements.maintain()  # a fresh Redis is marked as initialised from the (empty) ledger
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        subject = "ws_shared"  # no subscription: the Free plan, 60 a minute and 1000 a day
        first = datetime(2026, 5, 4, 12, 0, 15, tzinfo=timezone.utc)

        reports = run_round(script, vendo_postgres_url, data_dir, first, subject, store)
        assert sum(r["allowed"] for r in reports) == 60, reports
        assert sum(r["refused"] for r in reports) == WORKERS * HITS - 60
        minute, day = _counters(kernel, subject, first)
        assert (minute, day) == (60, 60)  # the refused hits counted in neither window

        later = first + timedelta(minutes=1)  # a new minute, the same day
        reports = run_round(script, vendo_postgres_url, data_dir, later, subject, store)
        assert sum(r["allowed"] for r in reports) == 60, reports
        assert _counters(kernel, subject, later) == (60, 120)
        if store == "redis":  # the windows lived in Redis, not in the database
            from vendo.entitlements.models import Counter

            with kernel.session() as session:
                assert session.query(Counter).filter(Counter.key.like("rl:%")).count() == 0
    finally:
        kernel.close()


def _counters(kernel: Kernel, subject: str, moment: datetime) -> tuple[int, int]:
    epoch = int(moment.timestamp())
    keys = [f"rl:sub:{subject}:minute:{epoch - epoch % 60}", f"rl:sub:{subject}:day:{epoch - epoch % 86400}"]
    with kernel.session() as session:
        minute, day = kernel.providers.get("counters").read(session, keys)  # whichever store is active
    return minute, day
